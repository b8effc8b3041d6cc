"""A broken départements GeoJSON (read by the statistics page, step 'exports' of tdw run) gets
an InputFileError naming the file and where, not an AttributeError / TypeError / UnicodeDecodeError
(breaker session 8). No database: the loader alone."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import DATA_DIR

from tdw.errors import InputFileError
from tdw.exports.stats_page import load_departements_geojson

REAL = DATA_DIR / "geo" / "departements.geojson"


def _features():
    return json.loads(REAL.read_text(encoding="utf-8"))["features"][:3]


@pytest.mark.parametrize(
    ("content", "line", "column", "fragment"),
    [
        (b"[]", None, "properties.code", "FeatureCollection"),
        (json.dumps({"type": "FeatureCollection"}).encode(), None, "properties.code", "FeatureCollection"),
        ('{"type": "FeatureCollection",\n "name": "D\u00e9partements", "features": []}'.encode("latin-1"),
         2, None, "not valid UTF-8"),
        (None, None, "features[1].geometry", "Polygon or MultiPolygon"),
    ],
    ids=["list", "no-features", "latin1", "null-geometry"],
)
def test_broken_geojson_names_the_file_and_where(tmp_path, content, line, column, fragment):
    if content is None:  # the real features, the second one without its geometry
        features = _features()
        features[1]["geometry"] = None
        content = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    (tmp_path / "departements.geojson").write_bytes(content)
    with pytest.raises(InputFileError) as info:
        load_departements_geojson(tmp_path)
    err = info.value
    assert err.path.endswith("departements.geojson")
    assert (err.line, err.column) == (line, column)
    assert fragment in err.problem


def test_real_geojson_still_loads(tmp_path):
    shutil.copy(REAL, tmp_path / "departements.geojson")
    assert len(load_departements_geojson(tmp_path)["features"]) == 101
