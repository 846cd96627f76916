"""PNG pictures: a flagged image with its masks outlined, and metrics over time."""

from __future__ import annotations

import io
from typing import Any

import pytest
from matplotlib import image as mpl_image

from ledger.errors import NotFound
from ledger.qa.charts import flagged_image_png, metrics_chart_png
from ledger.qa.metrics import Rate, RateCard, compute_metrics
from ledger.qa.report import run_qa
from tests.test_metrics import activity
from tests.test_qa_records import box, image, inst, state

PNG = b"\x89PNG\r\n\x1a\n"


def _pixels(data: bytes) -> Any:
    return mpl_image.imread(io.BytesIO(data), format="png")


def test_flagged_image_picture() -> None:
    report = run_qa(
        state(
            [
                inst("a", box(10, 10, 20, 20)),
                inst("b", box(15, 10, 35, 20)),
                inst("c", box(50, 40, 60, 50)),
            ],
            [image(), image("clean")],
        )
    )
    data = flagged_image_png(report, "img")
    assert data.startswith(PNG)  # the same bytes every time: see test_qa_cli
    pixels = _pixels(data)
    assert pixels.shape[1] == 1400 and pixels.shape[0] > 700
    # the flagged masks are filled in colour: some pixels are far from grey
    rgb = pixels[..., :3]
    assert float((rgb.max(axis=-1) - rgb.min(axis=-1)).max()) > 0.3
    assert flagged_image_png(report, "clean").startswith(PNG)  # no flags: still a picture
    with pytest.raises(NotFound, match="image 'ghost' is not in this report's state"):
        flagged_image_png(report, "ghost")


def test_metrics_chart_picture() -> None:
    report = compute_metrics(activity(), rate_card=RateCard("EUR", Rate(per_instance=0.5)))
    data = metrics_chart_png(report)
    assert data.startswith(PNG)
    assert _pixels(data).shape[:2] == (850, 1300)
    no_card = metrics_chart_png(compute_metrics(activity()))
    assert no_card.startswith(PNG) and no_card != data
