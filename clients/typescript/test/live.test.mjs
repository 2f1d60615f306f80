// The generated client against a live server (scripts/contract starts one and sets
// SYNCGUARD_URL and SYNCGUARD_API_KEY, a platform key).
import { test } from "node:test";
import assert from "node:assert/strict";
import { syncguardClient } from "../dist/index.js";

const url = process.env.SYNCGUARD_URL;
const key = process.env.SYNCGUARD_API_KEY;

test("create a tenant and a connection, then list jobs", { skip: !url && "no server" }, async () => {
  const api = syncguardClient(url, key);
  const name = `ts-${Date.now()}`;
  const tenant = await api.POST("/v1/tenants", { body: { name } });
  assert.equal(tenant.response.status, 201, JSON.stringify(tenant.error));
  const tenantId = tenant.data.id;

  const conn = await api.POST("/v1/connections", {
    body: {
      tenant_id: tenantId,
      provider: "trackstar",
      name: "brand_ts",
      // No credentials: the connection waits in `pending` for them, so nothing is called.
      config: { resources: ["orders"] },
    },
  });
  assert.equal(conn.response.status, 201, JSON.stringify(conn.error));
  assert.equal(conn.data.tenant_id, tenantId);

  const jobs = await api.GET("/v1/jobs", { params: { query: { limit: 10 } } });
  assert.equal(jobs.response.status, 200);
  assert.ok(Array.isArray(jobs.data.data));

  // Errors arrive typed as problems.
  const missing = await api.GET("/v1/connections/{id}", { params: { path: { id: "con_missing" } } });
  assert.equal(missing.response.status, 404);
  assert.match(missing.error.type, /not_found$/);
});
