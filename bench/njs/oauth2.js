// NGINX's reference OAuth 2.0 token introspection for nginx OSS (NGINX-Demos
// oauth2-token-introspection-oss; blog "Validating OAuth 2.0 Access Tokens with NGINX"):
// auth_request runs js_content, which sends the token to the identity server through an
// internal proxy_pass location and answers 204 (allow) when the answer says active: true,
// 403 when it says inactive, and 401 on any other outcome.

function introspect(r, uri) {
    if (!r.variables.access_token) {
        r.return(401);
        return;
    }
    r.subrequest(uri, function (reply) {
        if (reply.status != 200) {
            r.error("introspection request failed: " + reply.status);
            r.return(401);
            return;
        }
        try {
            var response = JSON.parse(reply.responseText);
            r.return(response.active === true ? 204 : 403);
        } catch (e) {
            r.error("introspection response is not JSON");
            r.return(401);
        }
    });
}

function introspectCached(r) {
    introspect(r, "/_oauth2_send_request_cached");
}

function introspectNoCache(r) {
    introspect(r, "/_oauth2_send_request_nocache");
}

export default { introspectCached, introspectNoCache };
