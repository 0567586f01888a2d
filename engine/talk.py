"""`voice-engine talk`: a small Converse client that prints the session as it happens."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc
from voiceengine.v1 import converse_pb2 as pb
from voiceengine.v1 import converse_pb2_grpc as pb_grpc

from engine.audio.codec import mulaw_decode
from engine.audio.wav import read_wav, write_wav

CHUNK_MS = 20
QUIET_AFTER_AUDIO_SEC = 2.0
# A final transcript may take long on a loaded host (asr.final_wait_ms up to 10 s):
# once speech was heard, its final is awaited this long, however quiet the stream.
FINAL_TRANSCRIPT_WAIT_SEC = 15.0


@dataclass
class TalkOptions:
    """What `talk` was asked to do."""

    target: str
    assistant_id: str
    texts: list[str] = field(default_factory=list)
    wav: Path | None = None
    realtime: bool = False
    out: Path | None = None
    output_rate_hz: int = 16000
    interim: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    tls: bool = False
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


def _channel(options: TalkOptions) -> grpc.aio.Channel:
    if not options.tls:
        return grpc.aio.insecure_channel(options.target)
    chain = options.client_cert.read_bytes() if options.client_cert else None
    key = options.client_key.read_bytes() if options.client_key else None
    root = options.ca.read_bytes() if options.ca else None
    credentials = grpc.ssl_channel_credentials(root, key, chain)
    return grpc.aio.secure_channel(options.target, credentials)


class _Printer:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._t0 = time.monotonic()
        self._in_reply = False

    def line(self, text: str) -> None:
        if self._in_reply:
            self._stream.write("\n")
            self._in_reply = False
        self._stream.write(f"[{time.monotonic() - self._t0:7.3f}] {text}\n")
        self._stream.flush()

    def reply_delta(self, delta: str) -> None:
        if not self._in_reply:
            self._stream.write(f"[{time.monotonic() - self._t0:7.3f}] assistant: ")
            self._in_reply = True
        self._stream.write(delta)
        self._stream.flush()


class _Conversation:
    """Client state: requests to send, events seen, audio collected."""

    def __init__(self, options: TalkOptions, out: TextIO) -> None:
        self.options = options
        self.requests: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
        self.printer = _Printer(out)
        self.audio = bytearray()
        self.output_format = pb.AudioFormat(
            encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=options.output_rate_hz
        )
        self.response_done = asyncio.Event()
        self.started = asyncio.Event()
        self.greeting = False
        self.last_event_at = time.monotonic()
        self.responding = False
        self.hearing = False  # speech started and its final transcript not yet in

    async def request_stream(self) -> AsyncIterator[pb.ConverseRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def send(self, request: pb.ConverseRequest | None) -> None:
        """Queue a request; None half-closes the stream."""
        self.requests.put_nowait(request)

    def _on_tool_event(self, message: pb.ConverseResponse) -> None:
        p = self.printer
        if message.HasField("tool_started"):
            t = message.tool_started
            p.line(f"tool {t.name} started ({t.executor}) id={t.tool_call_id}")
        elif message.HasField("tool_finished"):
            f = message.tool_finished
            outcome = pb.ToolOutcome.Name(f.outcome).removeprefix("TOOL_OUTCOME_").lower()
            p.line(f"tool {f.name} -> {outcome} in {f.latency_ms} ms")
        elif message.HasField("transfer"):
            p.line(f"transfer -> {message.transfer.target}")
        elif message.HasField("tool_call"):
            c = message.tool_call
            p.line(f"tool_call {c.name}({c.arguments_json}) id={c.tool_call_id}")
            # A terminal runs no client tools: say so at once rather than let it time out.
            p.line("  (talk runs no client tools: answered with an error)")
            result = pb.ToolResult(
                tool_call_id=c.tool_call_id, error="this client (voice-engine talk) runs no tools"
            )
            self.send(pb.ConverseRequest(tool_result=result))

    def on_event(self, message: pb.ConverseResponse) -> None:
        self.last_event_at = time.monotonic()
        kind = message.WhichOneof("event")
        p = self.printer
        if kind == "started":
            s = message.started
            source = pb.ConfigSource.Name(s.assistant.config_source).removeprefix("CONFIG_SOURCE_")
            p.line(
                f"started  session={s.session_id} call={s.call_id} "
                f"assistant={s.assistant.id} ({s.assistant.name}, config: {source.lower()})"
            )
            self.output_format = s.output_audio
            self.greeting = s.greeting
            self.started.set()
        elif kind == "assistant_text":
            self.responding = True
            p.reply_delta(message.assistant_text.delta)
        elif kind == "audio":
            self.responding = True
            data = message.audio.data
            if self.output_format.encoding == pb.AUDIO_ENCODING_MULAW:
                data = mulaw_decode(data)
            self.audio += data
        elif kind == "response_done":
            d = message.response_done
            status = pb.ResponseStatus.Name(d.status).removeprefix("RESPONSE_STATUS_").lower()
            p.line(f"response_done {d.response_id} {status} audio={d.audio_ms} ms")
            if d.status == pb.RESPONSE_STATUS_INTERRUPTED:
                p.line(f"  heard: {d.heard_text!r}")
            self.responding = False
            self.response_done.set()
        elif kind == "transcript":
            t = message.transcript
            label = "user" if t.is_final else "user (interim)"
            p.line(f"{label}: {t.text}")
            self.hearing = self.hearing and not t.is_final
        elif kind == "speech_started":
            self.hearing = True
            p.line(f"speech_started at {message.speech_started.offset_ms} ms")
        elif kind == "speech_stopped":
            p.line(f"speech_stopped at {message.speech_stopped.offset_ms} ms")
        elif kind == "interrupted":
            p.line(f"interrupted {message.interrupted.response_id}")
        elif kind == "metrics":
            m = message.metrics
            fields = [
                (name, getattr(m, name))
                for name in (
                    "end_of_speech_to_final_transcript_ms",
                    "llm_first_token_ms",
                    "tts_first_audio_ms",
                    "end_of_speech_to_first_audio_ms",
                    "tool_ms",
                )
                if m.HasField(name)
            ]
            p.line("metrics " + " ".join(f"{k}={v}" for k, v in fields))
        elif kind in ("tool_call", "tool_started", "tool_finished", "transfer"):
            self._on_tool_event(message)
        elif kind == "error":
            p.line(f"error {message.error.code}: {message.error.message}")
        elif kind == "ended":
            e = message.ended
            h = e.history
            reason = pb.EndReason.Name(e.reason).removeprefix("END_REASON_").lower()
            p.line(
                f"ended {reason} ({e.detail}); history: enabled={h.enabled} "
                f"delivered={h.delivered}/{h.enqueued} pending={h.pending} "
                f"spooled={h.spooled} finalized={h.finalized}"
            )

    async def wait_response(self) -> None:
        await self.response_done.wait()
        self.response_done.clear()


async def _drive(
    conv: _Conversation, read_line: Callable[[], str], wav: tuple[bytes, int] | None
) -> None:
    o = conv.options
    await conv.started.wait()
    if conv.greeting:
        await conv.wait_response()
    if wav is not None:
        await _stream_wav(conv, *wav, o.realtime)
        conv.response_done.clear()  # the spoken turn's reply is over: texts wait for their own
    texts = list(o.texts)
    interactive = wav is None and not texts
    while texts or interactive:
        if texts:
            text = texts.pop(0)
        else:
            line = await asyncio.to_thread(read_line)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
        conv.send(pb.ConverseRequest(text=pb.TextInput(text=text)))
        await conv.wait_response()
    conv.send(pb.ConverseRequest(end=pb.EndSession(reason="talk finished")))
    conv.send(None)


async def _stream_wav(conv: _Conversation, pcm: bytes, rate: int, realtime: bool) -> None:
    chunk = rate * 2 * CHUNK_MS // 1000
    t0 = time.monotonic()
    for i, start in enumerate(range(0, len(pcm), chunk)):
        conv.send(pb.ConverseRequest(audio=pb.AudioInput(data=pcm[start : start + chunk])))
        if realtime:
            await asyncio.sleep(max(0.0, t0 + (i + 1) * CHUNK_MS / 1000 - time.monotonic()))
        elif i % 10 == 9:
            await asyncio.sleep(0)  # let the stream flush
    conv.send(pb.ConverseRequest(control=pb.Control(action=pb.CONTROL_ACTION_END_OF_TURN)))
    # Wait until the replies are over: no final transcript pending (bounded), nothing in
    # flight and the stream quiet.
    conv.last_event_at = time.monotonic()
    final_due = conv.last_event_at + FINAL_TRANSCRIPT_WAIT_SEC
    # A quiet period is the absence of events, so this polls rather than awaits one.
    while (  # noqa: ASYNC110
        (conv.hearing and time.monotonic() < final_due)
        or conv.responding
        or time.monotonic() - conv.last_event_at < QUIET_AFTER_AUDIO_SEC
    ):
        await asyncio.sleep(0.1)


async def talk(
    options: TalkOptions,
    out: TextIO = sys.stdout,
    read_line: Callable[[], str] = sys.stdin.readline,
) -> int:
    """Run one conversation; return the process exit code."""
    conv = _Conversation(options, out)
    wav = read_wav(options.wav) if options.wav is not None else None
    input_rate_hz = wav[1] if wav is not None else 16000
    conv.send(
        pb.ConverseRequest(
            start=pb.StartSession(
                assistant_id=options.assistant_id,
                metadata=options.metadata,
                input_audio=pb.AudioFormat(
                    encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=input_rate_hz
                ),
                output_audio=pb.AudioFormat(
                    encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=options.output_rate_hz
                ),
                options=pb.SessionOptions(interim_transcripts=options.interim),
            )
        )
    )
    async with _channel(options) as channel:
        stub = pb_grpc.VoiceEngineServiceStub(channel)
        auth = (("authorization", f"Bearer {options.api_key}"),) if options.api_key else None
        call = stub.Converse(conv.request_stream(), metadata=auth)
        driver = asyncio.create_task(_drive(conv, read_line, wav))
        try:
            async for message in call:
                conv.on_event(message)
        except grpc.aio.AioRpcError as exc:
            conv.printer.line(f"error: {exc.code().name}: {exc.details()}")
            return 1
        finally:
            driver.cancel()
    if options.out is not None:
        write_wav(options.out, bytes(conv.audio), conv.output_format.sample_rate_hz)
        seconds = len(conv.audio) / 2 / conv.output_format.sample_rate_hz
        conv.printer.line(f"wrote {seconds:.1f} s of assistant audio to {options.out}")
    return 0
