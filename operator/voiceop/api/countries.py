"""ISO 3166-1 alpha-2 countries and a representative coordinate for each.

Both come from the IANA time zone database as the `tzdata` package ships it: `iso3166.tab`
lists the countries, `zone.tab` gives every zone's coordinates with its country. A country's
first zone in `zone.tab` is its most populous one (the file is ordered that way), which is a
fair stand-in for "where a caller from there is" when estimating distance to a region.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from typing import NamedTuple


class Coordinate(NamedTuple):
    latitude: float
    longitude: float


def _table(name: str) -> list[list[str]]:
    text = files("tzdata.zoneinfo").joinpath(name).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


@functools.cache
def iso_country_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code the time zone database knows (249 today)."""
    return frozenset(row[0] for row in _table("iso3166.tab"))


# zone.tab writes coordinates as ISO 6709 sign-degrees-minutes[-seconds]: +5230+01322.
_ISO6709 = re.compile(r"^([+-])(\d{2})(\d{2})(\d{2})?([+-])(\d{3})(\d{2})(\d{2})?$")


def _parse_iso6709(text: str) -> Coordinate:
    match = _ISO6709.match(text)
    if match is None:
        raise ValueError(f"not an ISO 6709 coordinate: {text!r}")
    lat_sign, lat_d, lat_m, lat_s, lon_sign, lon_d, lon_m, lon_s = match.groups()
    latitude = int(lat_d) + int(lat_m) / 60 + int(lat_s or 0) / 3600
    longitude = int(lon_d) + int(lon_m) / 60 + int(lon_s or 0) / 3600
    return Coordinate(
        latitude if lat_sign == "+" else -latitude,
        longitude if lon_sign == "+" else -longitude,
    )


@functools.cache
def country_coordinates() -> dict[str, Coordinate]:
    """Country code -> coordinate of its principal zone."""
    coordinates: dict[str, Coordinate] = {}
    for row in _table("zone.tab"):
        coordinates.setdefault(row[0], _parse_iso6709(row[1]))
    return coordinates
