"""The backend mix of ``odoo_first_requests.py --mix backend`` (Odoo 19):
the requests the web client makes when a user opens the backend and the
sales orders, sent as it sends them (JSON-RPC bodies and context from
Odoo 19's ``web`` client: ``action_service.js``, ``view_service.js``,
``orm_service.js``).

One round, 6 requests:

1. ``GET /odoo``
2. ``/web/session/get_session_info``
3. ``/web/action/load`` of ``sale.action_orders`` (by id, as from its menu)
4. ``sale.order.get_views``: the action's list and form views and its
   search view, with the action id, filters and toolbar (the client's
   ``loadViews`` options; its context holds ``lang`` only)
5. ``sale.order.web_search_read``: the list view's fields (the
   specification the client derives from the list arch), the action's
   default filter (``search_default_sales``: ``state = sale``), 80 rows
6. ``sale.order.web_read_group``: the same domain grouped by ``state``, the
   list's sums

``requests`` requests repeat the round (51 = 8 rounds and the first 3
requests of a ninth). What the round needs from the database (the action's
id and views, the list's fields, the user's context) is read once by
``resolve`` before any measurement.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from typing import Any, Protocol

ACTION = "sale.action_orders"
DOMAIN = [["state", "=", "sale"]]  # the action's search_default_sales filter
GROUPBY = ["state"]
ROUND = 6

Call = tuple[str, "dict[str, Any] | None"]  # path, JSON-RPC params (None: GET)


class Requester(Protocol):
    def request(self, url: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]: ...


class MixError(RuntimeError):
    pass


def rpc(client: Requester, base: str, path: str, params: dict[str, Any]) -> Any:
    status, content = client.request(base + path, params)
    reply = json.loads(content) if status == 200 else {}
    if "result" not in reply:
        raise MixError(f"{path} answered {status}: {content[:300]!r}")
    return reply["result"]


def call_kw(model: str, method: str, kwargs: dict[str, Any]) -> Call:
    return (
        f"/web/dataset/call_kw/{model}/{method}",
        {"model": model, "method": method, "args": [], "kwargs": kwargs},
    )


def resolve(client: Requester, base: str) -> list[Call]:
    """The round's requests, for the logged-in user of ``client``."""
    session = rpc(client, base, "/web/session/get_session_info", {})
    company = session["user_companies"]["current_company"]
    user_context = {**session["user_context"], "allowed_company_ids": [company]}
    action = rpc(client, base, "/web/action/load", {"action_id": ACTION, "context": user_context})
    model = action["res_model"]
    view_ids = {view_type: view_id for view_id, view_type in action["views"]}
    search_view = action["search_view_id"][0] if action["search_view_id"] else False
    views = [[view_ids.get("list", False), "list"], [view_ids.get("form", False), "form"]]
    views.append([search_view, "search"])
    views_call = call_kw(
        model,
        "get_views",
        {
            "context": {"lang": user_context["lang"]},
            "views": views,
            "options": {
                "action_id": action["id"],
                "embedded_action_id": False,
                "embedded_parent_res_id": False,
                "load_filters": True,
                "toolbar": True,
            },
        },
    )
    described = rpc(client, base, *views_call)
    fields = described["models"][model]["fields"]
    list_arch = described["views"]["list"]["arch"]
    specification, sums = list_fields(list_arch, fields)
    data_context = {
        **user_context,
        "search_default_sales": 1,
        "bin_size": True,
        "current_company_id": company,
    }
    return [
        ("/odoo", None),
        ("/web/session/get_session_info", {}),
        ("/web/action/load", {"action_id": action["id"], "context": user_context}),
        views_call,
        call_kw(
            model,
            "web_search_read",
            {
                "specification": specification,
                "offset": 0,
                "order": "",
                "limit": 80,
                "context": data_context,
                "count_limit": 10001,
                "domain": DOMAIN,
            },
        ),
        call_kw(
            model,
            "web_read_group",
            {
                "domain": DOMAIN,
                "groupby": GROUPBY,
                "aggregates": ["__count", *sums],
                "offset": 0,
                "limit": 80,
                "order": "",
                "auto_unfold": False,
                "opening_info": [],
                "unfold_read_specification": specification,
                "unfold_read_default_limit": 80,
                "context": data_context,
            },
        ),
    ]


def list_fields(arch: str, fields: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What the web client reads for a list arch: each field of its rows
    (relational ones with their display name) and the columns it sums."""
    specification: dict[str, Any] = {}
    sums = []
    for node in ElementTree.fromstring(arch):
        name = node.get("name")
        if node.tag != "field" or name not in fields:
            continue
        kind = fields[name]["type"]
        if kind == "one2many":
            continue
        specification[name] = (
            {"fields": {"display_name": {}}} if kind in ("many2one", "many2many") else {}
        )
        if node.get("sum"):
            sums.append(f"{name}:sum")
    return specification, sums


def calls(round_: list[Call], requests: int) -> list[Call]:
    """``requests`` requests: the round, repeated."""
    return [round_[i % len(round_)] for i in range(requests)]
