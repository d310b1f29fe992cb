"""Fixtures for the chart tests: one Helm chart handle and one render per values set."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import helm_python as helm
import pytest

from tests.charts.chartlib import (
    CHART_DIR,
    VALUES_SET_NAMES,
    Rendered,
    make_ca_pem,
    render_chart,
    values_sets,
)

Render = Callable[[Mapping[str, Any]], Rendered]


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    """The chart, loaded once by the Helm SDK."""
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm.Chart) -> Render:
    """Render with the given values like `helm install`; cached per distinct values."""
    cache: dict[str, Rendered] = {}

    def _render(values: Mapping[str, Any]) -> Rendered:
        key = json.dumps(values, sort_keys=True)
        if key not in cache:
            cache[key] = render_chart(chart, values)
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def admin_ca_pem() -> str:
    """The CA an admin gives in certificates.mode=secret."""
    return make_ca_pem()


@pytest.fixture(scope="session")
def named_values(admin_ca_pem: str) -> dict[str, dict[str, Any]]:
    """The named values sets (see chartlib.values_sets)."""
    return values_sets(admin_ca_pem)


@pytest.fixture(params=VALUES_SET_NAMES)
def any_render(
    request: pytest.FixtureRequest, render: Render, named_values: dict[str, dict[str, Any]]
) -> Rendered:
    """Each named values set in turn, for checks that must hold whatever the admin chose."""
    name: str = request.param
    return render(named_values[name])


@pytest.fixture
def rendered_set(
    render: Render, named_values: dict[str, dict[str, Any]]
) -> Callable[[str], Rendered]:
    """Look up the render of a named values set."""
    return lambda name: render(named_values[name])


@pytest.fixture
def default(render: Render) -> Rendered:
    """The chart with its default values."""
    return render({})
