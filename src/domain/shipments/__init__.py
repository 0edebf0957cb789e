"""Shipment processing: LetterShop shipment import v1 (DESIGN §5).

Pure domain code: CSV in, export CSV plus counts out. The only outside dependency is a
``SerialSource`` (the atomic S10 serial counter, ``adapters.serials.DynamoDbSerialCounter``).
"""

from domain.shipments.processing import ProcessedFile, export_name, process_import
from domain.shipments.products import Product
from domain.shipments.results import EXPORT_COLUMNS, RowResult, SerialSource, Status
from domain.shipments.s10 import check_digit, is_valid_s10, s10_id
from domain.shipments.tariff import Tariff, default_tariff

__all__ = [
    "EXPORT_COLUMNS",
    "ProcessedFile",
    "Product",
    "RowResult",
    "SerialSource",
    "Status",
    "Tariff",
    "check_digit",
    "default_tariff",
    "export_name",
    "is_valid_s10",
    "process_import",
    "s10_id",
]
