"""The page and the OpenAPI title follow the application, not the demo."""

from __future__ import annotations

import httpx

from server.testing import serving
from tests.platform import app


async def test_the_page_offers_the_apps_own_streams_and_the_title_names_its_services() -> None:
    app.RECORD.release_events.set()
    async with serving(app.services, http=True) as served:
        assert served.http_url is not None
        async with httpx.AsyncClient(base_url=served.http_url, timeout=10) as http:
            page = (await http.get("/")).text
            spec = (await http.get("/openapi.json")).json()
    assert "<title>rill: orders.v1.OrderService</title>" in page
    assert '"key": "shipping"' in page  # the app's settings name, not the demo's "orders"/"files"
    assert '"path": "/v1/orders:process"' in page
    assert "files" not in page.lower().split("<script>")[0]  # no demo service hard-coded in the markup
    assert spec["info"]["title"] == "rill: orders.v1.OrderService"
