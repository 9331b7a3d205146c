"""THE one place the services are listed. Adding a service: its package under
``cds_service/services/``, its content folder ``cards/<folder>/``, and one line here."""

from __future__ import annotations

from pathlib import Path

from cds_service.platform.service import Service
from cds_service.services.sacral_bsi.content import load_content
from cds_service.services.sacral_bsi.service import SacralBsiService
from cds_service.services.sacral_bsi_orders.content import FOLDER as ORDERS_FOLDER
from cds_service.services.sacral_bsi_orders.content import load_order_content
from cds_service.services.sacral_bsi_orders.service import order_services


def load_services(cards_dir: Path) -> tuple[Service, ...]:
    """Every service, each built from its content folder under ``cards_dir``; a ContentError
    names the file that is wrong."""
    sacral = load_content(cards_dir / "sacral-bsi")
    orders = load_order_content(cards_dir / ORDERS_FOLDER, sacral)
    return (SacralBsiService(sacral), *order_services(orders))
