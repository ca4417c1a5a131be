// finops_gql's GraphiQL page script, inlined by finops_gql/graphql/view.py in place of the script
// of Strawberry's page (it keeps that script's URL sharing and explorer plugin). It adds:
// - a notice telling a user without a token what to do (shown while no Authorization header is
//   set or an answer is 401, hidden once an answer succeeds);
// - a fresh schema fetch when the Authorization header changes, so the Docs pane loads without
//   a manual re-fetch (GraphiQL 3 re-introspects when its `fetcher` prop changes);
// - in development (GRAPHIQL_DEV_TOKEN_FILE), the Headers tab prefilled and a default document.
// Subscriptions run through GraphiQL's own fetcher (its bundled graphql-ws client): a
// graphql-transport-ws socket at this page's URL, whose connection_init payload is the Headers tab,
// where the server reads Authorization (finops_gql/graphql/live.py).
// window.FINOPS_GRAPHIQL = {headers: string | null, query: string | null} is set just before.
(function () {
  "use strict";
  const config = window.FINOPS_GRAPHIQL || {};

  // URL parameters, as Strawberry's page reads and writes them (headers are read, never written:
  // a token does not belong in the address bar or the history).
  const parameters = {};
  for (const entry of window.location.search.slice(1).split("&")) {
    const eq = entry.indexOf("=");
    if (eq >= 0) {
      parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(entry.slice(eq + 1));
    }
  }
  function updateURL(data) {
    Object.assign(parameters, data);
    const search = Object.keys(parameters)
      .filter((key) => Boolean(parameters[key]))
      .map((key) => encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]))
      .join("&");
    history.replaceState(null, null, "?" + search);
  }

  const notice = document.getElementById("finops-token-notice");
  const noticeDetail = document.getElementById("finops-token-notice-detail");
  function showNotice(detail) {
    noticeDetail.textContent = detail || "";
    notice.hidden = false;
  }
  function hideNotice() {
    notice.hidden = true;
  }

  // The Authorization value of the Headers tab's text, or null when there is none.
  function authorizationOf(text) {
    if (!text || !text.trim()) return null;
    let headers;
    try {
      headers = JSON.parse(text);
    } catch (e) {
      return null;
    }
    if (!headers || typeof headers !== "object") return null;
    for (const key of Object.keys(headers)) {
      const value = headers[key];
      if (key.toLowerCase() === "authorization" && typeof value === "string" && value.trim()) {
        return value.trim();
      }
    }
    return null;
  }

  // Every request of the page goes through here: its answer decides the notice.
  async function observedFetch(input, init) {
    const response = await window.fetch(input, init);
    if (response.status === 401) {
      // A token was sent and refused (expired, wrong secret...): say why.
      const sent = Object.keys((init && init.headers) || {}).some(
        (key) => key.toLowerCase() === "authorization",
      );
      let reason = "";
      try {
        reason = sent ? (await response.clone().json()).errors[0].message : "";
      } catch (e) {
        reason = "";
      }
      showNotice(reason ? "The token was refused: " + reason + "." : "");
    } else if (response.ok) {
      hideNotice();
    }
    return response;
  }

  const fetchURL = window.location.href.split("?")[0];
  const subscriptionURL = (function () {
    const url = new URL(fetchURL);
    url.protocol = url.protocol === "http:" ? "ws:" : "wss:";
    url.hash = "";
    return url.toString();
  })();
  const baseFetcher = GraphiQL.createFetcher({
    url: fetchURL,
    subscriptionUrl: subscriptionURL,
    fetch: observedFetch,
  });
  // A new function each time: GraphiQL fetches the schema again when its fetcher changes.
  function newFetcher() {
    return function fetcher(params, options) {
      return baseFetcher(params, options);
    };
  }

  const initialHeaders = parameters.headers || config.headers || undefined;
  if (!authorizationOf(initialHeaders)) showNotice("");

  function FinopsGraphiQL() {
    const [query, setQuery] = React.useState(parameters.q || config.query || undefined);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [fetcher, setFetcher] = React.useState(() => newFetcher());
    const lastAuthorization = React.useRef(authorizationOf(initialHeaders));
    const pending = React.useRef(null);
    const explorer = React.useMemo(() => GraphiQLPluginExplorer.explorerPlugin(), []);

    function onEditQuery(value) {
      setQuery(value);
      updateURL({ q: value });
    }
    function onEditVariables(value) {
      setVariables(value);
      updateURL({ variables: value });
    }
    function onEditHeaders(value) {
      // Wait for typing to pause: one schema fetch per new token, not one per keystroke.
      clearTimeout(pending.current);
      pending.current = setTimeout(() => {
        const authorization = authorizationOf(value);
        if (!authorization) showNotice("");
        if (authorization && authorization !== lastAuthorization.current) {
          setFetcher(() => newFetcher());
        }
        lastAuthorization.current = authorization;
      }, 300);
    }

    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: "headers",
      plugins: [explorer],
      query: query,
      variables: variables,
      headers: initialHeaders,
      onEditQuery: onEditQuery,
      onEditVariables: onEditVariables,
      onEditHeaders: onEditHeaders,
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(FinopsGraphiQL),
  );
})();
