// SMART launch (EHR: launch + iss; standalone: iss): fhirclient does the authorization code
// flow with PKCE. The service checked iss against its allowlist before serving this page.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  FHIR.oauth2.authorize({
    iss: config.iss,  // the server's checked iss, not one read again from the address
    clientId: config.clientId,
    scope: config.scope,
    redirectUri: config.redirectUri,
    pkceMode: "required",  // SMART App Launch 2.x: public clients use PKCE S256
  }).catch(function (error) {
    document.querySelector("main").textContent = "Launch failed: " + error.message;
  });
})();
