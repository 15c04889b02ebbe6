// Swagger UI for the connector's own OpenAPI document. Kept in a file, not inline, so the page's CSP allows no
// inline script. The key typed under "Authorize" stays in this page's memory (no persistAuthorization: it would
// put the key in localStorage).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
