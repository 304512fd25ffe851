"""Distance units, without numpy (for the request path)."""

KM_PER_MILE = 1.609344


def km_to_miles(km: float | None) -> float | None:
    return None if km is None else round(km / KM_PER_MILE, 3)
