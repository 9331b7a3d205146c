"""One error hierarchy, mapped to an HTTP status and an OperationOutcome body in one place
(``cds_service.api.errors``). Messages never carry patient data: no ids, names or resource bodies.
"""

from __future__ import annotations


class CdsError(Exception):
    """Base of every error the service answers on purpose."""

    status = 500
    issue_code = "exception"  # FHIR issue-type code
    kind = "internal_error"  # stable machine-readable name, also logged

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InternalError(CdsError):
    """A bug: the body says only that the service failed; the log says where."""

    status = 500
    issue_code = "exception"
    kind = "internal_error"
    MESSAGE = "The service failed while handling this request."

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class BadRequestError(CdsError):
    status = 400
    issue_code = "invalid"
    kind = "bad_request"


class ClientDisconnectedError(BadRequestError):
    """The caller went away (or broke the protocol) before its body arrived: its fault, not a
    bug; nobody is left to read the answer."""

    kind = "client_disconnected"

    def __init__(self) -> None:
        super().__init__("The client disconnected before the request body arrived.")


class RequestTimeoutError(CdsError):
    """The body did not arrive within CDS_REQUEST_READ_TIMEOUT_SECONDS."""

    status = 408
    issue_code = "timeout"
    kind = "request_timeout"


class UnknownServiceError(CdsError):
    status = 404
    issue_code = "not-found"
    kind = "unknown_service"


class PayloadTooLargeError(CdsError):
    status = 413
    issue_code = "too-costly"
    kind = "payload_too_large"


class PreconditionFailedError(CdsError):
    """The data the rule needs is neither prefetched nor obtainable (CDS Hooks: 412)."""

    status = 412
    issue_code = "processing"
    kind = "prefetch_unavailable"


class FhirServerError(PreconditionFailedError):
    """The EHR's FHIR server could not give the data (unreachable, slow, refused, broken)."""

    kind = "fhir_server_error"


class FhirUnreachableError(FhirServerError):
    kind = "fhir_unreachable"


class FhirTimeoutError(FhirServerError):
    issue_code = "timeout"
    kind = "fhir_timeout"


class FhirAuthRejectedError(FhirServerError):
    issue_code = "security"
    kind = "fhir_auth_rejected"


class FhirNotFoundError(FhirServerError):
    issue_code = "not-found"
    kind = "fhir_not_found"


class FhirBadResponseError(FhirServerError):
    kind = "fhir_bad_response"


class FhirResponseTooLargeError(FhirBadResponseError):
    kind = "fhir_response_too_large"


class ForbiddenError(CdsError):
    """The request asks for something this deployment does not allow (a FHIR server that is
    not on the SMART app's allowlist)."""

    status = 403
    issue_code = "forbidden"
    kind = "forbidden"
