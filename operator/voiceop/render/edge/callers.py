"""Caller number -> country by longest E.164 prefix, from `phonenumbers`' metadata.

Most calling codes belong to one country (+49 -> DE). Shared ones (+1 for 25 NANP countries,
+7, +44, +61, ...) are told apart by the national number's first digits: US and CA by area
code (+1212 -> US, +1416 -> CA), +441624 -> IM. The table is derived by asking `phonenumbers`
the country of a sample number under every national prefix of up to DEPTH digits, then
collapsed so that each prefix that stays differs from the one a digit shorter. Deriving it
takes seconds, so the package ships it (caller_prefixes.json); a test derives it again and
compares, so it follows the installed `phonenumbers`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import phonenumbers

DEPTH = 4
SHIPPED = Path(__file__).with_name("caller_prefixes.json")
NON_GEOGRAPHIC = "001"


def _sample_region(code: int, national_prefix: str) -> str | None:
    """The country of a number of typical length starting with `national_prefix`, if valid."""
    for filler in ("2345678901", "5550123456", "9876543210"):
        national = (national_prefix + filler)[:10]
        number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
        if national.startswith("0"):
            number.italian_leading_zero = True
            number.number_of_leading_zeros = len(national) - len(national.lstrip("0"))
        region = phonenumbers.region_code_for_number(number)
        if region and region != NON_GEOGRAPHIC:
            return str(region)
    return None


def _collapse(code: int, prefix: str, inherited: str, out: dict[str, str]) -> None:
    """Entries under `prefix` whose country differs from `inherited` (the shorter prefix's)."""
    if len(prefix) == DEPTH:
        region = _sample_region(code, prefix)
        if region is not None and region != inherited:
            out[f"+{code}{prefix}"] = region
        return
    leaves = [_sample_region(code, prefix + digit) for digit in "0123456789"]
    known = Counter(region for region in leaves if region is not None)
    if not known:
        return
    here = known.most_common(1)[0][0]
    if here != inherited and prefix:
        out[f"+{code}{prefix}"] = here
    else:
        here = inherited
    for digit in "0123456789":
        _collapse(code, prefix + digit, here, out)


def derive_caller_prefixes() -> dict[str, str]:
    """E.164 prefix ('+44', '+441624') -> ISO country, for every geographic calling code."""
    table: dict[str, str] = {}
    for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()):
        geographic = [r for r in regions if r != NON_GEOGRAPHIC]
        if not geographic:
            continue
        main = geographic[0]  # phonenumbers lists a shared code's main country first
        table[f"+{code}"] = main
        if len(geographic) > 1:
            _collapse(code, "", main, table)
    return dict(sorted(table.items()))


@cache
def caller_prefixes() -> dict[str, str]:
    shipped: dict[str, str] = json.loads(SHIPPED.read_text(encoding="utf-8"))["prefixes"]
    return shipped


def country_of_caller(number: str) -> str | None:
    """What the edge computes: the country of the longest known prefix of `number`."""
    table = caller_prefixes()
    for end in range(len(number), 1, -1):
        country = table.get(number[:end])
        if country is not None:
            return country
    return None


def shipped_document() -> str:
    document = {"phonenumbers": phonenumbers.__version__, "prefixes": derive_caller_prefixes()}
    return json.dumps(document, indent=0, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m voiceop.render.edge.callers: derive the shipped table again
    SHIPPED.write_text(shipped_document(), encoding="utf-8")
    print(f"wrote {SHIPPED}", file=sys.stderr)
