// AG-UI's own client against a herald run: `node run-agent.mjs URL`, where URL is a
// run's `/v1/runs/{id}/stream?format=ag-ui`; HERALD_TOKEN, when set, is sent as
// `Authorization: Bearer`. Runs `HttpAgent.runAgent` (which checks every event against
// AG-UI's schemas and ordering rules and folds them into messages) and prints, one JSON
// object a line on stdout: each event the client accepted, then
// `{"done": true, "messages": [...]}`; on failure `{"error": "..."}` and exit 1. The
// client's own warnings (material it stripped or events it dropped) go to stderr.
import { HttpAgent } from "@ag-ui/client";

const out = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const url = process.argv[2];
if (!url) {
  out({ error: "usage: node run-agent.mjs URL" });
  process.exit(1);
}

const headers = process.env.HERALD_TOKEN
  ? { Authorization: `Bearer ${process.env.HERALD_TOKEN}` }
  : {};
const agent = new HttpAgent({ url, headers, threadId: "thread-from-the-client" });

try {
  await agent.runAgent({ runId: "run-from-the-client" }, { onEvent: ({ event }) => out(event) });
  out({ done: true, messages: agent.messages });
  process.exit(0);
} catch (err) {
  const cause = err?.cause ? `: ${err.cause.message ?? err.cause}` : "";
  out({ error: `${err?.message ?? err}${cause}` });
  process.exit(1);
}
