"""The dated list prices every cost figure uses (bootstrap/aws/emr/prices.json), read here only:
`create`'s hourly cost, bootstrap.aws.cost's estimates and doctor's check of the region."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spark.settings import ConfigError

PRICES_FILE = Path(__file__).parent / "emr" / "prices.json"


def price_table(prices_file: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(prices_file.read_text())


def region_prices(region: str, prices_file: Path = PRICES_FILE) -> dict[str, Any]:
    """The table with `region`'s instance and S3 request prices, or a one-line error."""
    table = price_table(prices_file)
    if region not in table.get("regions", {}) or region not in table.get("s3_requests", {}):
        raise ConfigError(f"no prices for {region} in {prices_file}")
    return table
