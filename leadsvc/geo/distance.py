"""Great-circle distance, vectorised with numpy (the haversine formula, as pgeocode uses).

Imported by the routing rebuild only; the request path never loads numpy.
"""

import numpy as np

EARTH_RADIUS_KM = 6371.0088


def _haversine(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_km(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distances in km between each (lat, lon) row of `points` and each row of `others`.

    Returns an array of shape (len(points), len(others)).
    """
    return _haversine(points[:, :1], points[:, 1:2], others[None, :, 0], others[None, :, 1])


def haversine_pairs_km(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distances in km between row i of `points` and row i of `others`."""
    return _haversine(points[:, 0], points[:, 1], others[:, 0], others[:, 1])


def unit_vectors(points: np.ndarray) -> np.ndarray:
    """(lat, lon) rows as unit vectors: the nearest point has the largest dot product."""
    lat, lon = np.radians(points[:, 0]), np.radians(points[:, 1])
    return np.column_stack((np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)))
