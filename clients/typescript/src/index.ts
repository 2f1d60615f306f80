// The syncguard API client: openapi-fetch typed by the generated `schema.ts`.
// Only `schema.ts` is generated (npm run generate); this file adds the bearer key.
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths };
export type Problem = components["schemas"]["Problem"];

/** A client of the syncguard API at `baseUrl`, authenticating with `apiKey` (sg_live_…). */
export function syncguardClient(baseUrl: string, apiKey: string): Client<paths> {
  return createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${apiKey}` },
  });
}
