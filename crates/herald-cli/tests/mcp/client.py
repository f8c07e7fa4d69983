"""An agent's side of herald's MCP server, driven by the official MCP Python SDK.

Run by crates/herald-cli/tests/cli/mcp.rs: `client.py SCENARIO CONFIG_JSON`. Each
scenario talks to a real hub (over streamable HTTP at /mcp, or through `herald mcp`
over stdio) and fails with an AssertionError naming what was wrong; it prints
`ok SCENARIO` at the end. Where the test must act in between (stop and restart the
hub), the script prints a line on stdout and waits for a line on stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, Literal

import httpx2
import jsonschema
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, SubscriptionLost
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

TOOLS = {"list_runs", "get_run", "wait_for_run", "get_events", "cancel_run"}
DEADLINE_S = 20.0
#: How long a test waits for what must not come: the longest it gives it, not a time
#: anything is expected to take.
QUIET_S = 1.0


def http(url: str, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(
        url + "/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
    )
    return Client(transport, mode="legacy", message_handler=NOTES.handle)


def stdio(cfg: dict[str, Any], *extra: str, token: str | None = None, **kw: Any) -> Client:
    token = token or cfg.get("token")
    env = {"HERALD_TOKEN": token} if token else {}
    env["HERALD_LOG"] = os.environ.get("HERALD_LOG", "warn")
    if cfg.get("tmp"):
        env["TMPDIR"] = cfg["tmp"]
    params = StdioServerParameters(
        command=cfg["herald"], args=["mcp", "--hub", cfg["hub"], *extra], env=env
    )
    kw.setdefault("mode", "legacy")
    return Client(params, message_handler=NOTES.handle, **kw)


class Notes:
    """The notifications a client heard."""

    def __init__(self) -> None:
        self.updated: list[str] = []

    async def handle(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(message.params.uri)


NOTES = Notes()


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def call(client: Client, tool: str, args: dict[str, Any], **kw: Any) -> Any:
    """A tool call that must succeed, its structured content checked by its schema."""
    result = await client.call_tool(tool, args, **kw)
    assert not result.is_error, f"{tool} {args} failed: {text(result)}"
    listed = {t.name: t for t in (await client.list_tools()).tools}
    schema = listed[tool].output_schema
    assert schema is not None, f"{tool} declares no output schema"
    jsonschema.validate(result.structured_content, schema)
    return result


async def refused(client: Client, tool: str, args: dict[str, Any], *words: str) -> str:
    """A tool call that must be a tool error whose text says each of `words`."""
    result = await client.call_tool(tool, args)
    said = text(result)
    assert result.is_error, f"{tool} {args} should have failed: {said}"
    for word in words:
        assert word in said, f"{tool} {args}: {word!r} not in {said!r}"
    return said


async def tools(client: Client, cfg: dict[str, Any]) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert names == TOOLS, names
    done = cfg["finished_run"]

    result = await call(client, "get_run", {"run": done})
    said = text(result)
    assert len(said) <= 600, f"{len(said)} chars: {said}"
    for word in (done, "failed after", "doc-007", "malformed JSON"):
        assert word in said, f"{word!r} not in {said!r}"
    run = result.structured_content["run"]
    assert run["status"] == "failed", run
    assert run["failed_items"][0]["item"] == "doc-007", run

    result = await call(client, "list_runs", {"status": "failed"})
    ids = [r["id"] for r in result.structured_content["runs"]]
    assert done in ids, ids
    # Exactly `limit` runs: none more.
    result = await call(client, "list_runs", {"status": "failed", "limit": len(ids)})
    assert not result.structured_content["more"], result.structured_content
    result = await call(client, "list_runs", {"limit": 1})
    assert len(result.structured_content["runs"]) == 1, result.structured_content
    await refused(client, "list_runs", {"status": "sleeping"}, "status")
    for limit in (0, 501):
        await refused(client, "list_runs", {"limit": limit}, "`limit`", "1 to 500")

    page = await call(client, "get_events", {"run": done, "limit": 5})
    first = page.structured_content
    assert [e["seq"] for e in first["events"]] == [1, 2, 3, 4, 5], first
    assert first["next_cursor"] == 5, first
    page = await call(client, "get_events", {"run": done, "after": 5, "limit": 2})
    assert [e["seq"] for e in page.structured_content["events"]] == [6, 7]
    page = await call(client, "get_events", {"run": done, "types": "run.*"})
    kinds = {e["event"] for e in page.structured_content["events"]}
    assert kinds == {"run.started", "run.finished"}, kinds
    last = first["last_seq"]
    await refused(client, "get_events", {"run": done, "after": last + 5}, "`after`", "cursor")
    await refused(client, "get_events", {"run": done, "types": "no such"}, "types")
    for limit in (0, 1001):
        await refused(client, "get_events", {"run": done, "limit": limit}, "`limit`", "1 to 1000")

    result = await call(client, "wait_for_run", {"run": done})
    assert result.structured_content["outcome"] == "finished"

    heard: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        heard.append((done, message))

    slow = cfg["slow_run"]
    result = await call(
        client,
        "wait_for_run",
        {"run": slow, "timeout_s": 2},
        progress_callback=progress,
    )
    outcome = result.structured_content["outcome"]
    assert outcome in ("timeout", "finished"), outcome
    if outcome == "timeout":
        assert "still running" in text(result), text(result)
    assert heard, "no progress notification while waiting"
    values = [done for done, _ in heard]
    assert values == sorted(set(values)), f"progress must grow: {values}"
    assert all(slow in (m or "") for _, m in heard), heard

    result = await call(client, "cancel_run", {"run": slow, "reason": "from MCP"})
    assert result.structured_content["cancel_requested"] is True
    run = (await call(client, "get_run", {"run": slow})).structured_content["run"]
    assert run["cancel_requested"] or run["status"] == "cancelled", run

    await refused(client, "get_run", {"run": "no-such-run"}, "no run", "no-such-run")
    await refused(client, "get_run", {"run": "bad id!"}, "`run`", "run id")
    await refused(client, "get_events", {"run": ""}, "`run`", "run id")
    await refused(client, "get_run", {}, "run")
    await refused(client, "get_run", {"run": done, "extra": 1}, "extra")
    for timeout_s in (99, -1, 50.5):
        await refused(client, "wait_for_run", {"run": done, "timeout_s": timeout_s}, "`timeout_s`")
    await refused(client, "cancel_run", {"run": done}, "finished")


async def scenario_stdio_tools(cfg: dict[str, Any]) -> None:
    async with stdio(cfg) as client:
        await tools(client, cfg)
        try:
            await client.call_tool("start_command", {"command": ["true"]})
        except MCPError as e:
            assert "--allow-exec" in e.message, e.message
        else:
            raise AssertionError("start_command ran without --allow-exec")


async def scenario_http_tools(cfg: dict[str, Any]) -> None:
    async with http(cfg["hub"], cfg["token"]) as client:
        await tools(client, cfg)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def output_of(started: types.CallToolResult) -> str:
    """What a command start_command started wrote, from the file it names."""
    with open(started.structured_content["output"]) as f:
        return f.read()


async def gone(path: str) -> None:
    """Waits, within the deadline, for `path` to be removed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while os.path.exists(path):
        assert loop.time() < deadline, f"{path} still exists"
        await asyncio.sleep(0.05)


async def scenario_exec(cfg: dict[str, Any]) -> None:
    async with stdio(cfg, "--allow-exec") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == TOOLS | {"start_command"}, names
        started = await call(
            client,
            "start_command",
            {"command": ["sh", "-c", "echo hello; exit 3"], "name": "exits 3"},
        )
        run = started.structured_content["run"]
        assert run in text(started), text(started)
        waited = await call(client, "wait_for_run", {"run": run, "timeout_s": 20})
        state = waited.structured_content
        assert state["outcome"] == "finished", state
        assert state["run"]["status"] == "failed", state
        assert state["run"]["result"] == {"exit_code": 3}, state
        assert state["run"]["name"] == "exits 3", state
        assert "hello" in output_of(started)

        started = await call(client, "start_command", {"command": ["pwd"], "cwd": cfg["cwd"]})
        run = started.structured_content["run"]
        waited = await call(client, "wait_for_run", {"run": run, "timeout_s": 20})
        assert waited.structured_content["run"]["status"] == "succeeded", waited
        assert output_of(started).strip() == cfg["cwd"]
        # In a directory of this herald mcp's own under its TMPDIR, named in the text.
        output = started.structured_content["output"]
        outputs = os.path.dirname(output)
        assert os.path.dirname(outputs) == cfg["tmp"], output
        assert os.path.basename(outputs).startswith("herald-mcp-"), output
        assert output in text(started), text(started)
        assert "removed when herald mcp exits" in text(started), text(started)

        await refused(client, "start_command", {"command": []}, "command")
        await refused(client, "start_command", {"command": ["true"], "cwd": "/no/such"}, "cwd")
        await refused(
            client,
            "start_command",
            {"command": ["true"], "idle_timeout_s": -1},
            "idle_timeout_s",
        )
    # herald mcp has exited with its stdin closed: the output went with it.
    await gone(outputs)


async def scenario_tokens(cfg: dict[str, Any]) -> None:
    hub, mine, other = cfg["hub"], cfg["run"], cfg["other_run"]
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    for token in (None, "not-a-token-of-this-hub"):
        headers = {"Accept": "application/json, text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with httpx2.AsyncClient() as raw:
            reply = await raw.post(f"{hub}/mcp", json=initialize, headers=headers)
        assert reply.status_code == 401, (reply.status_code, reply.text)
        assert reply.json()["error"]["code"] == "unauthorized", reply.text
        assert reply.headers["www-authenticate"] == "Bearer", reply.headers
        refusal: Exception | None = None
        try:
            async with http(hub, token) as client:
                await client.list_tools()
        except Exception as e:  # noqa: BLE001 - the SDK's error for a 401 is generic
            refusal = e
        assert refusal is not None, f"/mcp let in the token {token!r}"

    async with http(hub, cfg["read_token"]) as client:
        listed = await call(client, "list_runs", {})
        assert [r["id"] for r in listed.structured_content["runs"]] == [mine]
        await call(client, "get_run", {"run": mine})
        await call(client, "get_events", {"run": mine})
        await refused(client, "get_run", {"run": other}, "another run")
        await refused(client, "cancel_run", {"run": mine}, "read token")
        try:
            await client.read_resource(f"herald://runs/{other}")
        except MCPError as e:
            assert "another run" in e.message, e.message
        else:
            raise AssertionError("a read token read another run's resource")

    async with http(hub, cfg["write_token"]) as client:
        await refused(client, "cancel_run", {"run": other}, "another run")
        result = await call(client, "cancel_run", {"run": mine, "reason": "done"})
        assert result.structured_content["run"] == mine

    async with http(hub, cfg["token"]) as client:
        listed = await call(client, "list_runs", {})
        ids = {r["id"] for r in listed.structured_content["runs"]}
        assert {mine, other} <= ids, ids


async def resources(client: Client, cfg: dict[str, Any]) -> None:
    run = cfg["run"]
    uri = f"herald://runs/{run}"
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["herald://runs/{id}"], templates
    listed = [str(r.uri) for r in (await client.list_resources()).resources]
    assert uri in listed, listed
    read = await client.read_resource(uri)
    state = json.loads(read.contents[0].text)
    assert state["id"] == run, state
    try:
        await client.read_resource("herald://runs/no-such-run")
    except MCPError as e:
        assert "no-such-run" in e.message, e.message
    else:
        raise AssertionError("read an unknown run")

    NOTES.updated.clear()
    await client.subscribe_resource(uri)
    await appended(cfg, "changed")
    await updated(uri)
    read = await client.read_resource(uri)
    assert json.loads(read.contents[0].text)["logs"][-1]["message"] == "changed"


def http_auto(url: str, token: str | None) -> Client:
    """A client that negotiates the newest revision: 2026-07-28, without sessions."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(
        url + "/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
    )
    return Client(transport, mode="auto")


async def scenario_http_listen(cfg: dict[str, Any]) -> None:
    """2026-07-28's `subscriptions/listen` in place of `resources/subscribe`."""
    uri = f"herald://runs/{cfg['run']}"
    async with http_auto(cfg["hub"], cfg["token"]) as client:
        assert client.session.protocol_version == "2026-07-28", client.session.protocol_version
        # A URI that is no run is not honoured; a run named twice is watched once, so
        # one change is told once.
        asked = [uri, "https://example.com/x", uri]
        async with client.listen(resource_subscriptions=asked) as sub:
            assert set(sub.honored.resource_subscriptions or []) == {uri}, sub.honored
            await appended(cfg, "heard through listen")
            event = await asyncio.wait_for(sub.__anext__(), DEADLINE_S)
            assert event == ResourceUpdated(uri), event
            try:
                again = await asyncio.wait_for(sub.__anext__(), QUIET_S)
            except asyncio.TimeoutError:
                pass
            else:
                raise AssertionError(f"one change told twice: {again}")
        read = await client.read_resource(uri)
        assert json.loads(read.contents[0].text)["logs"][-1]["message"] == "heard through listen"
    # A run's read token hears of its run only: the stream ends at once, without the
    # graceful close, and the request's error (which the SDK does not surface) names
    # the run.
    other = f"herald://runs/{cfg['other_run']}"
    async with http_auto(cfg["hub"], cfg["read_token"]) as client:
        try:
            async with client.listen(resource_subscriptions=[other]) as sub:
                await asyncio.wait_for(sub.__anext__(), DEADLINE_S)
        except SubscriptionLost:
            pass
        else:
            raise AssertionError("a read token heard of another run")
    error = await raw_listen_error(cfg["hub"], cfg["read_token"], other)
    assert cfg["other_run"] in error["message"], error


async def raw_listen_error(hub: str, token: str, uri: str) -> dict[str, Any]:
    """The JSON-RPC error that ends a `subscriptions/listen` for `uri`, read off the wire."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "subscriptions/listen",
        "params": {"_meta": meta, "notifications": {"resourceSubscriptions": [uri]}},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "subscriptions/listen",
    }
    async with (
        httpx2.AsyncClient(timeout=DEADLINE_S) as raw,
        raw.stream("POST", hub + "/mcp", headers=headers, json=body) as reply,
    ):
        async for line in reply.aiter_lines():
            if line.startswith("data:") and '"error"' in line:
                return json.loads(line[5:])["error"]
    raise AssertionError("the listen request ended without an error")


async def scenario_http_resources(cfg: dict[str, Any]) -> None:
    async with http(cfg["hub"], cfg["token"]) as client:
        await resources(client, cfg)


async def scenario_stdio_resources(cfg: dict[str, Any]) -> None:
    async with stdio(cfg) as client:
        await resources(client, cfg)


def tell(line: str) -> None:
    print(line, flush=True)


def heard() -> str:
    return sys.stdin.readline().strip()


async def appended(cfg: dict[str, Any], message: str) -> None:
    """Appends a log line to the config's run through the REST API."""
    async with httpx2.AsyncClient() as rest:
        reply = await rest.post(
            f"{cfg['hub']}/v1/runs/{cfg['run']}/events",
            headers={"Authorization": f"Bearer {cfg['write_token']}"},
            json=[{"event": "log", "level": "info", "message": message}],
        )
        assert reply.status_code == 200, reply.text


async def updated(uri: str) -> None:
    """Waits for a notifications/resources/updated of `uri`."""
    deadline = time.monotonic() + DEADLINE_S
    while uri not in NOTES.updated:
        assert time.monotonic() < deadline, f"no notifications/resources/updated of {uri}"
        await asyncio.sleep(0.05)
    NOTES.updated.clear()


async def scenario_restart(cfg: dict[str, Any]) -> None:
    run = cfg["run"]
    uri = f"herald://runs/{run}"
    async with stdio(cfg) as client:
        await call(client, "get_run", {"run": run})
        NOTES.updated.clear()
        await client.subscribe_resource(uri)
        await appended(cfg, "before the restart")
        await updated(uri)
        tell("stop the hub")
        assert heard() == "stopped"
        for tool in ("get_run", "wait_for_run"):
            await refused(client, tool, {"run": run}, "cannot be reached", cfg["hub"])
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == TOOLS, names
        tell("start the hub")
        assert heard() == "started"
        # No call in between: herald mcp renews the subscription by itself, once it
        # sees the hub again; until then the events appended make no notification.
        deadline = time.monotonic() + DEADLINE_S
        NOTES.updated.clear()
        while uri not in NOTES.updated:
            assert time.monotonic() < deadline, "the subscription was not renewed"
            await appended(cfg, "after the restart")
            await asyncio.sleep(0.5)
        result = await call(client, "get_run", {"run": run})
        assert result.structured_content["run"]["id"] == run


# MCP tasks (SEP-2663, `io.modelcontextprotocol/tasks`, protocol 2026-07-28). The SDK
# carries extensions (`ClientExtension`, a `ResultClaim` on the `task` result type) but
# ships no client of this one: these few lines are it, on the SDK's own requests.
TASKS = "io.modelcontextprotocol/tasks"
ANY = TypeAdapter(dict[str, Any])


class CreatedTask(types.Result):
    """A `tools/call` answered with a task handle (the task's fields inlined)."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str


class TaskParams(types.RequestParams):
    task_id: str


class GetTask(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams
    name_param = "taskId"


class CancelTask(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams
    name_param = "taskId"


async def get_task(session: Any, task_id: str) -> dict[str, Any]:
    request = GetTask(params=TaskParams(task_id=task_id))
    return await session.send_request(request, ANY)


async def cancel_task(session: Any, task_id: str) -> dict[str, Any]:
    request = CancelTask(params=TaskParams(task_id=task_id))
    return await session.send_request(request, ANY)


async def task_settled(session: Any, task_id: str) -> dict[str, Any]:
    """Polls `tasks/get` at the pace the task asks for until it ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * DEADLINE_S
    while True:
        got = await get_task(session, task_id)
        assert got["taskId"] == task_id, got
        if got["status"] in ("completed", "failed", "cancelled"):
            return got
        assert got["status"] == "working", got
        assert loop.time() < deadline, f"task {task_id} still {got['status']}"
        await asyncio.sleep(got.get("pollIntervalMs", 1000) / 1000)


async def resolve_task(created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
    got = await task_settled(ctx.session, created.task_id)
    assert got["status"] == "completed", got
    return types.CallToolResult.model_validate(got["result"])


class Tasks(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=resolve_task)]


def http_tasks(url: str, token: str | None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(
        url + "/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
    )
    return Client(transport, mode="auto", extensions=[Tasks()])


async def tasks(client: Client, cfg: dict[str, Any], other: Client) -> None:
    session = client.session
    # The claim resolves the task: the call reads as the plain call does.
    done = cfg["finished_run"]
    result = await client.call_tool("wait_for_run", {"run": done})
    assert not result.is_error, text(result)
    assert result.structured_content["outcome"] == "finished", result
    assert done in text(result), text(result)

    # The handle itself: created at once, working, then completed with the result.
    slow = cfg["slow_run"]
    args = {"run": slow, "timeout_s": 2}
    created = await session.call_tool("wait_for_run", args, allow_claimed=True)
    assert isinstance(created, CreatedTask), created
    task_id = created.task_id
    assert created.status == "working", created
    first = await get_task(session, task_id)
    assert first["status"] in ("working", "completed"), first
    got = await task_settled(session, task_id)
    assert got["status"] == "completed", got
    assert got["result"]["structuredContent"]["outcome"] in ("timeout", "finished")

    # A tool error is a completed task whose result says so.
    created = await session.call_tool("wait_for_run", {"run": "no-such-run"}, allow_claimed=True)
    got = await task_settled(session, created.task_id)
    assert got["status"] == "completed" and got["result"]["isError"], got

    # Cancelled: the wait ends, the run goes on.
    created = await session.call_tool(
        "wait_for_run", {"run": slow, "timeout_s": 50}, allow_claimed=True
    )
    task_id = created.task_id
    # Another token may neither see nor cancel it.
    for ask in (get_task, cancel_task):
        try:
            await ask(other.session, task_id)
        except MCPError as e:
            assert "no task" in str(e), e
        else:
            raise AssertionError(f"{ask.__name__} of another token's task answered")
    await cancel_task(session, task_id)
    got = await task_settled(session, task_id)
    assert got["status"] == "cancelled", got
    run = (await call(client, "get_run", {"run": slow})).structured_content["run"]
    assert not run["cancel_requested"], run
    try:
        await get_task(session, "no-such-task")
    except MCPError as e:
        assert "no task" in str(e), e
    else:
        raise AssertionError("tasks/get of an unknown task answered")


async def scenario_stdio_tasks(cfg: dict[str, Any]) -> None:
    # herald mcp carries the extension between its host and the hub.
    async with (
        stdio(cfg, mode="auto", extensions=[Tasks()]) as client,
        stdio(cfg, token=cfg["other_token"], mode="auto", extensions=[Tasks()]) as other,
    ):
        await tasks(client, cfg, other)


async def scenario_exec_tasks(cfg: dict[str, Any]) -> None:
    extensions = [Tasks()]
    async with stdio(cfg, "--allow-exec", mode="auto", extensions=extensions) as client:
        session = client.session
        # The task is the command's life: it ends with the finished run.
        argv = ["sh", "-c", "echo task; exit 3"]
        created = await session.call_tool("start_command", {"command": argv}, allow_claimed=True)
        assert isinstance(created, CreatedTask), created
        got = await task_settled(session, created.task_id)
        assert got["status"] == "completed", got
        out = got["result"]["structuredContent"]
        assert out["run"] == out["finished"]["id"], out
        assert out["finished"]["status"] == "failed", out
        assert out["finished"]["result"] == {"exit_code": 3}, out
        assert read_file(out["output"]).strip() == "task"

        # Resolved by the claim, as a plain call reads.
        result = await client.call_tool("start_command", {"command": ["true"]})
        out = result.structured_content
        assert out["finished"]["status"] == "succeeded", result
        assert "succeeded" in text(result), text(result)

        # Cancelled: the run is cancelled and herald exec stops the command.
        created = await session.call_tool(
            "start_command", {"command": ["sleep", "60"]}, allow_claimed=True
        )
        deadline = time.monotonic() + DEADLINE_S
        working = await get_task(session, created.task_id)
        while "started run" not in working.get("statusMessage", ""):
            assert working["status"] == "working", working
            assert time.monotonic() < deadline, f"the command did not start: {working}"
            await asyncio.sleep(0.05)
            working = await get_task(session, created.task_id)
        run = working["statusMessage"].split()[2].rstrip(":")
        await cancel_task(session, created.task_id)
        got = await task_settled(session, created.task_id)
        assert got["status"] == "cancelled", got
        waited = await call(client, "wait_for_run", {"run": run, "timeout_s": 20})
        assert waited.structured_content["run"]["status"] == "cancelled", waited

        # Bad arguments: a completed task with the tool error.
        created = await session.call_tool("start_command", {"command": []}, allow_claimed=True)
        got = await task_settled(session, created.task_id)
        assert got["status"] == "completed" and got["result"]["isError"], got


async def scenario_http_tasks(cfg: dict[str, Any]) -> None:
    async with (
        http_tasks(cfg["hub"], cfg["token"]) as client,
        http_tasks(cfg["hub"], cfg["other_token"]) as other,
    ):
        await tasks(client, cfg, other)
    # Without the extension the same call answers the plain way.
    async with http(cfg["hub"], cfg["token"]) as client:
        result = await call(client, "wait_for_run", {"run": cfg["finished_run"]})
        assert result.structured_content["outcome"] == "finished"


SCENARIOS = {
    "http-tasks": scenario_http_tasks,
    "stdio-tasks": scenario_stdio_tasks,
    "exec-tasks": scenario_exec_tasks,
    "stdio-tools": scenario_stdio_tools,
    "http-tools": scenario_http_tools,
    "exec": scenario_exec,
    "tokens": scenario_tokens,
    "http-resources": scenario_http_resources,
    "http-listen": scenario_http_listen,
    "stdio-resources": scenario_stdio_resources,
    "restart": scenario_restart,
}


def main() -> None:
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(asyncio.wait_for(SCENARIOS[name](cfg), timeout=120))
    tell(f"ok {name}")


if __name__ == "__main__":
    main()
