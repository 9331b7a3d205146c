"""deploy/kubernetes/: no cluster runs here, so the manifests are validated against the Kubernetes
schemas (kubernetes-validate, strict: an unknown field fails), scanned (checkov, from its own
.venv-checkov) and checked against the service itself: its routes, its settings, its issuers
file format, its shutdown timings, the image's user, and each other (selectors, ports, names)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from cds_service.auth.issuers import load_issuers
from cds_service.main import create_app
from cds_service.settings import Settings
from tests.conftest import ClientFactory, record_figure, settings_for_tests

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# The oldest Kubernetes these manifests are meant for, and the newest the pinned
# kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "sacral-bsi-cds"
APP_UID = 10001  # the image's user (docker/Dockerfile)
# Settings and routes of the lead engineer's work in progress (`serve` with workers, the
# shutdown drain and grace, GET /metrics), which the manifests already use. Remove each name when
# it lands: from then on the tripwire tests below fail until it is removed here.
# Figures of deploy/kubernetes/README.md ("Resources", PostgreSQL): one worker's peak RSS under
# load with the benchmark's requests, and with 4 MB bodies at concurrency 16 (the worst case
# measured); the supervisor of a multi-worker uvicorn with its resource tracker.
MEASURED_WORKER_MIB = 121
MEASURED_WORKER_WORST_MIB = 183
MEASURED_SUPERVISOR_MIB = 40
DEFAULT_SHUTDOWN_GRACE_SECONDS = 20
# The checks skipped in the manifests, each with its reason there. A new one is a decision: add
# it here with the reason in the manifest.
SKIPPED_CHECKS = frozenset({"CKV_K8S_35", "CKV_K8S_43", "CKV_SECRET_4"})

Doc = dict[str, Any]


def manifests() -> list[tuple[Path, Doc]]:
    found = [
        (path, doc)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]
    assert found, f"no manifest under {MANIFESTS}"
    return found


def the(kind: str, name: str | None = None) -> Doc:
    (doc,) = [
        doc
        for _, doc in manifests()
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    return doc


def pod() -> Doc:
    spec: Doc = the("Deployment")["spec"]["template"]
    return spec


def container() -> Doc:
    (only,) = pod()["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def settings_map() -> dict[str, str]:
    data: dict[str, str] = the("ConfigMap", "sacral-bsi-cds-settings")["data"]
    return data


def env_value(name: str) -> str:
    (value,) = [e["value"] for e in container()["env"] if e["name"] == name]
    assert isinstance(value, str)
    return value


def mounts() -> dict[str, Doc]:
    return {m["mountPath"]: m for m in container()["volumeMounts"]}


def volumes() -> dict[str, Doc]:
    return {v["name"]: v for v in pod()["spec"]["volumes"]}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (units[unit] if unit else 1 / 2**20)


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


# Schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_validate_strictly_against_the_schemas(version: str) -> None:
    errors = []
    for path, doc in manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{path.name} {doc['kind']}: {where}: {exc.message}")
        record_figure(f"kubernetes manifests validated against {version}")
    assert not errors, "\n".join(errors)


def test_kubernetes_strict_validation_rejects_an_unknown_field() -> None:
    deployment = json.loads(json.dumps(the("Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_kubernetes_manifests_are_the_expected_objects_in_one_namespace() -> None:
    kinds = sorted(doc["kind"] for _, doc in manifests())
    assert kinds == sorted(
        [
            "Namespace", "ServiceAccount", "ConfigMap", "Secret", "Secret", "Deployment",
            "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
            "Ingress",
        ]
    )  # fmt: skip
    assert the("Namespace")["metadata"]["name"] == NAMESPACE
    assert the("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for path, doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, path.name
        # The Secrets hold placeholders: `kubectl apply -l '!sacral-bsi-cds/placeholder'` leaves
        # them out (deploy/kubernetes/README.md).
        placeholder = doc["metadata"]["labels"].get("sacral-bsi-cds/placeholder") == "true"
        assert placeholder == (doc["kind"] == "Secret"), path.name


# checkov ---------------------------------------------------------------------------------------


def checkov() -> Path:
    if not CHECKOV.exists():
        message = (
            f"checkov is not installed at {CHECKOV} (make checkov-install, which make test runs, "
            "installs it in its own venv)"
        )
        if os.environ.get("CDS_TEST_REQUIRE_CHECKOV") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return CHECKOV


def test_kubernetes_manifests_pass_checkov_with_no_failed_check() -> None:
    done = subprocess.run(
        [str(checkov()), "--directory", str(MANIFESTS), "--framework", "kubernetes", "secrets",
         "--skip-download", "--output", "json", "--compact"],
        capture_output=True, text=True, check=False, timeout=300, cwd=ROOT,
    )  # fmt: skip
    try:
        reports = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {done.returncode}):\n{done.stderr[-3000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {report["check_type"]: report for report in reports}
    assert set(by_type) == {"kubernetes", "secrets"}, done.stdout[-2000:]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for report in reports
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = by_type["kubernetes"]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= len(manifests())  # every object was scanned
    assert summary["passed"] >= 90, summary
    skipped = {
        check["check_id"] for report in reports for check in report["results"]["skipped_checks"]
    }
    assert skipped == SKIPPED_CHECKS
    record_figure(f"checkov {summary['checkov_version']} checks passed", summary["passed"])


def test_kubernetes_every_skipped_check_gives_its_reason() -> None:
    skips: dict[str, str] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        text = path.read_text()
        for check, reason in re.findall(r"checkov\.io/skip\d+: \"(CKV\w+)=([^\"]*)\"", text):
            skips[check] = reason
        for check, reason in re.findall(r"#\s*checkov:skip=(CKV\w+):([^\n]*)", text):
            skips[check] = reason
    assert set(skips) == SKIPPED_CHECKS
    for check, reason in skips.items():
        assert len(reason.split()) >= 10, f"{check}: say why it is skipped ({reason!r})"


# The service's own routes, settings and files --------------------------------------------------


PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def http_paths() -> set[str]:
    """The paths the manifests have something GET: the probes and the Prometheus scrape."""
    scrape = pod()["metadata"]["annotations"]["prometheus.io/path"]
    return {container()[kind]["httpGet"]["path"] for kind in PROBES} | {scrape}


def test_kubernetes_probes_and_scrape_path_are_routes_of_the_app_on_its_port() -> None:
    http = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert http == {"http": int(settings_map()["CDS_PORT"])}
    probes = {kind: container()[kind]["httpGet"] for kind in PROBES}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["port"] in (*http, *http.values())
    annotations = pod()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == http["http"]
    app = create_app(settings_for_tests())
    routes = {path for path, methods in app.openapi()["paths"].items() if "get" in methods}
    missing = http_paths() - routes
    assert not missing, f"not GET routes of the app: {sorted(missing)}"


@pytest.mark.anyio
async def test_kubernetes_probe_and_scrape_paths_answer_200(client_at: ClientFactory) -> None:
    client = client_at()
    for path in sorted(http_paths()):
        assert (await client.get(path)).status_code == 200, path


def test_kubernetes_environment_names_are_settings_and_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = {f"CDS_{name.upper()}" for name in Settings.model_fields}
    names = set(settings_map()) | {e["name"] for e in container()["env"]}
    names |= set(the("Secret", "sacral-bsi-cds-database")["stringData"])
    cds = {name for name in names if name.startswith("CDS_")}
    unknown = cds - fields
    assert not unknown, f"not settings: {sorted(unknown)}"
    assert names - cds <= {"PROMETHEUS_MULTIPROC_DIR", "PYTHONDONTWRITEBYTECODE"}
    for key in list(os.environ):
        if key.startswith("CDS_"):
            monkeypatch.delenv(key)
    for key, value in settings_map().items():
        monkeypatch.setenv(key, value)
    database = the("Secret", "sacral-bsi-cds-database")["stringData"]["CDS_DATABASE_URL"]
    monkeypatch.setenv("CDS_DATABASE_URL", database)
    settings = Settings()  # every value is one the service accepts
    assert settings.require_jwt
    assert settings.start_refusal is None
    assert not settings.loopback  # reachable from the ingress controller
    assert settings.port == int(settings_map()["CDS_PORT"])


def test_kubernetes_database_url_comes_from_the_secret_and_matches_the_egress_port() -> None:
    (entry,) = [e for e in container()["env"] if e["name"] == "CDS_DATABASE_URL"]
    reference = entry["valueFrom"]["secretKeyRef"]
    secret = the("Secret", reference["name"])
    assert "CDS_DATABASE_URL" not in settings_map()  # a password never goes in a ConfigMap
    url = make_url(secret["stringData"][reference["key"]])
    assert (url.get_backend_name(), url.get_driver_name()) == ("postgresql", "psycopg")
    egress = the("NetworkPolicy")["spec"]["egress"]
    ports = {port["port"] for rule in egress for port in rule["ports"]}
    assert (url.port or 5432) in ports


def test_kubernetes_issuers_file_is_mounted_from_its_secret_and_loads(tmp_path: Path) -> None:
    issuers_file = Path(settings_map()["CDS_TRUSTED_ISSUERS_FILE"])
    mount = mounts()[str(issuers_file.parent)]
    assert mount["readOnly"] is True
    secret_name = volumes()[mount["name"]]["secret"]["secretName"]
    content = the("Secret", secret_name)["stringData"][issuers_file.name]
    copy = tmp_path / issuers_file.name
    copy.write_text(content)
    issuers = load_issuers(copy)  # the format the service reads (raises when it is not)
    assert issuers
    assert not any(issuer.development_only for issuer in issuers.values())
    assert tomllib.loads(content)  # TOML, as its name says


def test_kubernetes_writable_paths_are_mounted_empty_dirs() -> None:
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    for path in (env_value("PROMETHEUS_MULTIPROC_DIR"), "/tmp"):
        mount = mounts().get(path)
        assert mount is not None, (
            f"{path} is not a mounted volume: the root filesystem is read-only"
        )
        assert not mount.get("readOnly", False), path
        assert "emptyDir" in volumes()[mount["name"]], path
        assert volumes()[mount["name"]]["emptyDir"].get("sizeLimit"), path
    database = make_url(the("Secret", "sacral-bsi-cds-database")["stringData"]["CDS_DATABASE_URL"])
    assert database.get_backend_name() != "sqlite"  # SQLite would write under the read-only /app


def test_kubernetes_shutdown_fits_in_the_termination_grace_period() -> None:
    drain = int(settings_map()["CDS_SHUTDOWN_DRAIN_SECONDS"])
    grace = int(settings_map().get("CDS_SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE_SECONDS))
    assert drain > 0  # endpoints are removed while the pod still serves
    assert pod()["spec"]["terminationGracePeriodSeconds"] > drain + grace


def test_kubernetes_resources_cover_the_workers() -> None:
    """Each worker is one process: it uses up to one core, and its own memory (measured)."""
    workers = int(settings_map()["CDS_WORKERS"])
    resources = container()["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert mebibytes(requests["memory"]) >= workers * MEASURED_WORKER_MIB + MEASURED_SUPERVISOR_MIB
    assert mebibytes(limits["memory"]) >= (
        workers * MEASURED_WORKER_WORST_MIB + MEASURED_SUPERVISOR_MIB
    )
    assert mebibytes(limits["memory"]) >= mebibytes(requests["memory"])
    assert cores(limits["cpu"]) >= workers
    assert 0 < cores(requests["cpu"]) <= cores(limits["cpu"])


# Security --------------------------------------------------------------------------------------


def test_kubernetes_pod_runs_as_the_image_user_without_privileges() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(rf"^USER {APP_UID}:", dockerfile, re.MULTILINE)
    spec = pod()["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == APP_UID
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    # No <SERVICE>_PORT variables: a Service named "cds" would set CDS_PORT=tcp://...
    assert spec["enableServiceLinks"] is False
    account = the("ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    context = container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == APP_UID
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_kubernetes_image_is_the_release_not_latest() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = container()["image"]
    assert "@sha256:" in image or image.rsplit(":", 1)[1] == version, image
    assert container()["imagePullPolicy"] == "Always"


# The objects agree with each other -------------------------------------------------------------


def test_kubernetes_selectors_match_the_pods() -> None:
    labels = pod()["metadata"]["labels"]
    deployment = the("Deployment")
    assert matches(deployment["spec"]["selector"]["matchLabels"], labels)
    assert matches(the("Service")["spec"]["selector"], labels)
    assert matches(the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert matches(the("NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    for spread in pod()["spec"]["topologySpreadConstraints"]:
        assert matches(spread["labelSelector"]["matchLabels"], labels)
    target = the("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"], deployment["kind"], deployment["metadata"]["name"]
    )  # fmt: skip
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it


def test_kubernetes_disruption_budget_and_autoscaler_keep_a_pod_serving() -> None:
    hpa = the("HorizontalPodAutoscaler")["spec"]
    pdb = the("PodDisruptionBudget")["spec"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"  # relative to the CPU request, which is set
    assert "cpu" in container()["resources"]["requests"]
    strategy = the("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_kubernetes_service_and_ingress_reach_the_container_port() -> None:
    service = the("Service")
    (port,) = service["spec"]["ports"]
    names = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert port["targetPort"] in (*names, *names.values())
    (rule,) = the("Ingress")["spec"]["rules"]
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"].get("name", port["name"]) == port["name"]


@pytest.mark.anyio
async def test_kubernetes_ingress_routes_the_public_paths_only(client_at: ClientFactory) -> None:
    """EHRs reach discovery, the hook calls, feedback and the SMART app; /metrics, the probes
    and the OpenAPI document stay inside the cluster."""
    (rule,) = the("Ingress")["spec"]["rules"]
    prefixes = [p["path"] for p in rule["http"]["paths"]]
    assert all(p["pathType"] == "Prefix" for p in rule["http"]["paths"])

    def routed(path: str) -> bool:
        return any(path == pre or path.startswith(pre.rstrip("/") + "/") for pre in prefixes)

    public = ["/cds-services", "/cds-services/sacral-bsi", "/cds-services/sacral-bsi/feedback",
              "/smart/launch", "/smart/app", "/smart/api/view", "/smart/static/app.js"]  # fmt: skip
    assert all(routed(path) for path in public)
    assert not any(routed(path) for path in ("/metrics", "/healthz", "/readyz", "/openapi.json"))
    client = client_at()
    assert (await client.get("/metrics")).status_code == 200  # served, to the cluster only


def test_kubernetes_ingress_host_is_the_public_base_url() -> None:
    """Token audiences are checked against CDS_PUBLIC_BASE_URL: EHRs must call that host."""
    public = urlsplit(settings_map()["CDS_PUBLIC_BASE_URL"])
    assert public.scheme == "https"
    ingress = the("Ingress")["spec"]
    (rule,) = ingress["rules"]
    assert rule["host"] == public.hostname
    assert any(public.hostname in tls["hosts"] for tls in ingress["tls"])


def test_kubernetes_network_policy_lets_in_and_out_only_what_is_named() -> None:
    policy = the("NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    container_port = container()["ports"][0]["containerPort"]
    sources = []
    for rule in policy["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` lets everyone in"
        assert [p["port"] for p in rule["ports"]] == [container_port]
        for peer in rule["from"]:
            sources.append(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
    assert sorted(sources) == ["ingress-nginx", "monitoring"]
    allowed = set()
    for rule in policy["egress"]:
        assert rule.get("to"), "an egress rule without `to` lets the pods reach anything"
        for peer in rule["to"]:
            assert "0.0.0.0/0" not in peer.get("ipBlock", {}).get("cidr", "")
        allowed |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert allowed == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 5432)}
