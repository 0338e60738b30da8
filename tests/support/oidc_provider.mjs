// A real OpenID provider for the SSO tests: npm `oidc-provider` (the certified Node
// implementation) on a loopback port, PKCE required, one confidential client.
// Usage: node oidc_provider.mjs PORT CONFIG.json
//   CONFIG: {client_id, client_secret, redirect_uri, accounts_file}
// The accounts file ({"alice": {"email", "preferred_username", "groups": [...]}}) is read
// on every sign-in, so a test can take someone out of a group between two sign-ins.
// Instead of a login form, POST /test/login-as {"account": "alice"} picks who signs in
// next (the provider's own interaction API finishes login and consent for them).
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { pathToFileURL } from "node:url";

// installed in tests/npm/node_modules, which ESM would not look in from here
const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);

const [port, configPath] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
const accounts = () => JSON.parse(fs.readFileSync(config.accounts_file, "utf8"));
let loginAs = null;

const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-key", use: "sig", alg: "RS256" };

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_post",
  }],
  pkce: { required: () => true },
  scopes: ["openid", "email", "profile", "groups"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username", "name"],
    groups: ["groups"],
  },
  jwks: { keys: [jwk] },
  cookies: { keys: ["tanglaw-test-cookie-key"] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => {
    const account = accounts()[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, email_verified: true, ...account }) };
  },
});

const handle = provider.callback();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (!loginAs || !accounts()[loginAs]) {
    await provider.interactionFinished(req, res, {
      error: "access_denied", error_description: "no test account was picked",
    }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = new provider.Grant({ accountId: loginAs, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope || "openid"));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId: loginAs }, consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/test/login-as") {
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => {
      loginAs = JSON.parse(body || "{}").account || null;
      res.writeHead(204).end();
    });
    return;
  }
  if (req.method === "GET" && /^\/interaction\/[^/?]+/.test(req.url)) {
    interaction(req, res).catch((error) => {
      res.writeHead(500, { "content-type": "text/plain" }).end(String(error));
    });
    return;
  }
  handle(req, res);
}).listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`listening ${issuer}\n`);
});
