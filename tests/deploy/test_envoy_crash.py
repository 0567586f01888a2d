"""`kill -9` of one engine behind Envoy: callers elsewhere never notice, history survives.

History goes to the reference backend (engine/devbackend), which is down (503) from the
first turn on, so every entry of the killed engine's calls is still in its spool when it
dies. Its calls are known from the callers' side (their streams break) and from Envoy's
side (the engine's active requests just before the kill); the two must agree.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from voiceengine.v1 import converse_pb2 as pb

from tests.deploy.envoy_process import running_envoy
from tests.deploy.fleet import DESK, Call, Fleet, desk_assistant, open_call
from tests.helpers.engine_process import http_backend_env
from tests.helpers.refbackend import running_refbackend
from tests.integration.test_history_e2e import ALWAYS, BackendDb, Entry

HEALTH_INTERVAL = 0.5
HC_DEADLINE = 20 * HEALTH_INTERVAL
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
GREETING = "Desk of the backend, how can I help?"


async def _turn(call: Call, entries: list[Entry]) -> None:
    """One question and its answer, recorded in ``entries`` as the backend must store them."""
    question = "what are your hours"
    reply = await call.ask(question)
    await call.client.until("metrics")  # the turn is over and recorded
    entries.append((len(entries) + 1, "user", question))
    entries.append((len(entries) + 1, "assistant", reply))


async def test_kill_9_breaks_only_that_engines_calls_and_their_history_arrives_once(
    tmp_path: Path,
) -> None:
    async with running_refbackend(tmp_path / "backend.sqlite3") as backend:
        await backend.put_assistant({**desk_assistant("backend"), "greeting": GREETING})
        db = BackendDb(tmp_path / "backend.sqlite3")
        fleet = Fleet(tmp_path / "engines")
        try:
            env = http_backend_env(backend.url)
            engines = await fleet.start(2, **env)
            async with (
                running_envoy(
                    tmp_path / "envoy",
                    engine_ports=[e.port for e in engines],
                    health_interval_sec=HEALTH_INTERVAL,
                ) as envoy,
                grpc.aio.insecure_channel(envoy.target) as channel,
            ):
                await envoy.wait_hosts({e.port for e in engines}, set(), timeout=HC_DEADLINE)
                calls = [await open_call(channel, DESK) for _ in range(6)]
                entries = {c.started.call_id: [(1, "assistant", c.greeting)] for c in calls}
                await backend.faults(fail_next=ALWAYS, status=503)
                for call in calls:
                    await _turn(call, entries[call.started.call_id])

                hosts = await envoy.hosts()
                victim = max(engines, key=lambda e: hosts[e.port].rq_active)
                survivor = next(e for e in engines if e is not victim)
                on_victim = hosts[victim.port].rq_active
                assert on_victim >= 1
                assert await victim.proc.kill() == -9

                # The victim's callers see their stream break; everyone else talks on.
                broken: list[Call] = []
                alive: list[Call] = []
                for call in calls:
                    try:
                        await _turn(call, entries[call.started.call_id])
                        alive.append(call)
                    except grpc.aio.AioRpcError as error:
                        # Envoy resets a stream whose engine vanished mid-call (RST_STREAM
                        # INTERNAL_ERROR), which gRPC reports as INTERNAL "Stream removed".
                        assert error.code() in BROKEN, error
                        broken.append(call)
                assert len(broken) == on_victim
                assert len(alive) == len(calls) - on_victim

                # New calls keep succeeding (the dead engine's connect failures are retried
                # elsewhere until the health check drops it), all on the survivor.
                fresh = [await open_call(channel, DESK) for _ in range(4)]
                await envoy.wait_hosts({survivor.port}, {victim.port}, timeout=HC_DEADLINE)
                for call in fresh:
                    entries[call.started.call_id] = [(1, "assistant", call.greeting)]
                    await _turn(call, entries[call.started.call_id])
                for call in alive + fresh:
                    assert (await call.hang_up()).reason == pb.END_REASON_CLIENT_ENDED
                assert (await envoy.hosts())[survivor.port].rq_total == len(alive) + len(fresh)

                # The backend comes back; the killed engine restarts on its own spool and
                # port, and Envoy takes it back.
                await backend.reset()
                await victim.start()
                await envoy.wait_hosts({e.port for e in engines}, set(), timeout=HC_DEADLINE)

            for call in broken:
                summary = await db.wait_complete(
                    call.started.call_id, entries[call.started.call_id], timeout=30
                )
                assert summary["end_reason"] == "engine_restarted"  # cut, never ended
            for call in alive + fresh:
                summary = await db.wait_complete(
                    call.started.call_id, entries[call.started.call_id], timeout=30
                )
                assert summary["end_reason"] == "client_ended"
        finally:
            await fleet.close()
