"""finops_gql's GraphiQL page: Strawberry's page with a notice for users without a token, a
schema fetch when the token changes, and in development a token and an example document."""

from __future__ import annotations

import json
import re
from pathlib import Path

PAGE_SCRIPT = Path(__file__).parent.parent / "static" / "graphiql_page.js"

# The document GraphiQL opens with in development: one named operation per main use, so each
# runs on its own.
DEV_DOCUMENT = """\
# finops_gql: cost per component and team, from OpenCost.
#
# Each operation runs on its own: put the cursor in one and
# press Ctrl-Enter, or pick it from the run button's menu.
# Headers (below) holds a development token with role admin,
# written by scripts/dev. Docs (book icon, left) lists every
# type and field.

# A page of components: team, budget, persisted 30-day cost.
# Next page: components(first: 20, after: "<endCursor>")
query ComponentsPage {
  components(first: 20) {
    nodes {
      id
      name
      budgetUsd
      cost30d
      overBudget
      team { slug }
    }
    pageInfo { endCursor hasNextPage }
  }
}

# One team: its 30-day cost summary and its components,
# each with its last days of cost.
query TeamCosts {
  team(slug: "payments") {
    name
    costSummary {
      totalCost
      currency
      start
      end
      components { totalCost component { name } }
    }
    components(first: 20) {
      nodes {
        name
        cost30d
        budgetUsd
        history(limit: 7) { day totalCost }
      }
      pageInfo { endCursor hasNextPage }
    }
  }
}

# The most expensive components over the last 30 days.
query TopComponents {
  topComponents(limit: 5) {
    totalCost
    currency
    component { name team { slug } }
  }
}

# Admin: set a component's 30-day budget (null clears it).
# In the Variables tab, an id from ComponentsPage:
#   {"componentId": "...", "budgetUsd": 120}
mutation SetBudget($componentId: ID!, $budgetUsd: Float) {
  setBudget(componentId: $componentId, budgetUsd: $budgetUsd) {
    name
    budgetUsd
    cost30d
    overBudget
  }
}

# Admin: run a cost sync now, on the worker
# (needs Redis and `finops-gql worker`).
mutation TriggerCostSync {
  triggerCostSync { jobId status }
}

# Live: the end of each sync run, pushed over a WebSocket
# (graphql-transport-ws, the token from Headers). Run it, then
# TriggerCostSync in another tab (+, top right); the stop
# button ends it. alertRaised(teamId: ...) works alike.
subscription SyncFinished {
  costSyncFinished { syncRunId status records finishedAt error }
}
"""

NOTICE = """\
<div id="finops-token-notice" role="status" hidden>
  <strong>This API needs a token:</strong> add
  <code>{"Authorization": "Bearer &lt;JWT&gt;"}</code> in the <em>Headers</em> tab below
  (<code>finops-gql token --sub you --role admin</code>).
  <span id="finops-token-notice-detail"></span>
</div>
"""

STYLE = """\
<style>
  body { display: flex; flex-direction: column; height: 100vh; }
  #graphiql { height: auto; flex: 1 1 auto; min-height: 0; }
  #finops-token-notice {
    flex: 0 0 auto; padding: 8px 16px; font: 14px/1.5 system-ui, sans-serif;
    background: #fff4ce; color: #3b2f00; border-bottom: 1px solid #e3c567;
  }
  #finops-token-notice[hidden] { display: none; }
  #finops-token-notice code {
    font: 13px ui-monospace, monospace; background: rgba(0, 0, 0, 0.07);
    padding: 1px 3px; border-radius: 3px;
  }
</style>
"""


def script_json(value: object) -> str:
    """JSON to embed in an inline <script>: no `</script>`, `<!--` or `]]>` can end it early.

    `<`, `>` and `&` become \\u escapes (same value once parsed); json.dumps already escapes
    every non-ASCII character, U+2028 and U+2029 included.
    """
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def graphiql_page(html: str, dev_token: str | None = None) -> str:
    """Strawberry's (offline) GraphiQL page with finops_gql's script in place of its own.

    With `dev_token` the page opens with it in the Headers tab and with DEV_DOCUMENT: only for
    GRAPHIQL_DEV_TOKEN_FILE on a loopback-only server, since the page needs no token to load.
    """
    inline = re.findall(r"<script>.*?</script>", html, flags=re.DOTALL)
    if len(inline) != 1 or '<div id="graphiql"' not in html or "</head>" not in html:
        raise RuntimeError("Strawberry's GraphiQL page changed shape: review graphql/view.py")
    config = {
        "headers": json.dumps({"Authorization": f"Bearer {dev_token}"}, indent=2)
        if dev_token
        else None,
        "query": DEV_DOCUMENT if dev_token else None,
    }
    code = PAGE_SCRIPT.read_text()
    if "</script" in code.lower() or "<!--" in code:
        raise RuntimeError(f"{PAGE_SCRIPT.name} cannot be inlined: it contains </script or <!--")
    script = f"<script>\nwindow.FINOPS_GRAPHIQL = {script_json(config)};\n{code}</script>"
    html = html.replace(inline[0], script)
    html = html.replace('<div id="graphiql"', NOTICE + '    <div id="graphiql"', 1)
    return html.replace("</head>", STYLE + "  </head>", 1)
