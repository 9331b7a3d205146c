"""The services this process answers, by id: what discovery lists and calls are routed to."""

from __future__ import annotations

from cds_service.errors import UnknownServiceError
from cds_service.platform import wire
from cds_service.platform.service import Service


class ServiceRegistry:
    def __init__(self, *services: Service) -> None:
        self._services: dict[str, Service] = {}
        for service in services:
            service_id = service.definition.id
            if service_id in self._services:
                raise ValueError(f"two services with the id '{service_id}'")
            self._services[service_id] = service

    def __contains__(self, service_id: object) -> bool:
        return service_id in self._services

    def get(self, service_id: str) -> Service:
        service = self._services.get(service_id)
        if service is None:
            raise UnknownServiceError(f"No CDS service with id '{service_id}'.")
        return service

    def discovery(self) -> wire.Discovery:
        return wire.Discovery(services=tuple(s.definition for s in self._services.values()))
