"""Write ghz call data for the Converse stream (docs/load-testing.md).

    python clients/ghz/make_data.py text "what are your opening hours" > text.json
    python clients/ghz/make_data.py wav question.wav > audio.json
    python clients/ghz/make_data.py wav question.wav --binary > audio.bin

A data file is one whole call: `start`, then the turn (a typed text, or a 16-bit PCM WAV cut
into chunks). ghz sends the messages, half-closes and reads the reply to the end: the
half-close means "no more input", so the engine answers, then ends the call with OK.
JSON is ghz's `-D` format (bytes in base64); --binary is its `-B` format
(length-delimited serialized messages).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf import json_format
from voiceengine.v1 import converse_pb2 as pb

from engine.audio.wav import read_wav


def start(assistant_id: str, rate_hz: int, *, text_only: bool) -> pb.ConverseRequest:
    """The `start` of a load-test call (LINEAR16 both ways at ``rate_hz``)."""
    fmt = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=rate_hz)
    return pb.ConverseRequest(
        start=pb.StartSession(
            assistant_id=assistant_id,
            metadata={"channel": "ghz"},
            input_audio=fmt,
            output_audio=fmt,
            options=pb.SessionOptions(text_only=text_only),
        )
    )


def text_call(
    text: str, assistant_id: str = "default", *, text_only: bool = False
) -> list[pb.ConverseRequest]:
    """`start` and one typed turn."""
    return [
        start(assistant_id, 16000, text_only=text_only),
        pb.ConverseRequest(text=pb.TextInput(text=text)),
    ]


def audio_call(
    pcm16: bytes,
    rate_hz: int,
    assistant_id: str = "default",
    *,
    chunk_ms: int = 40,
    text_only: bool = False,
) -> list[pb.ConverseRequest]:
    """`start` and the caller's speech in ``chunk_ms`` chunks of 16-bit PCM."""
    size = rate_hz * 2 * chunk_ms // 1000
    chunks = [pcm16[i : i + size] for i in range(0, len(pcm16), size)]
    return [
        start(assistant_id, rate_hz, text_only=text_only),
        *(pb.ConverseRequest(audio=pb.AudioInput(data=c)) for c in chunks),
    ]


def to_json(messages: list[pb.ConverseRequest]) -> str:
    """ghz `-D` data: a JSON array, one element per message (bytes in base64)."""
    return json.dumps([json_format.MessageToDict(m) for m in messages])


def from_json(text: str) -> list[pb.ConverseRequest]:
    """Parse `-D` data as ghz does."""
    return [json_format.ParseDict(d, pb.ConverseRequest()) for d in json.loads(text)]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def to_binary(messages: list[pb.ConverseRequest]) -> bytes:
    """ghz `-B` data: each serialized message prefixed with its length (varint)."""
    out = bytearray()
    for message in messages:
        body = message.SerializeToString()
        out += _varint(len(body)) + body
    return bytes(out)


def from_binary(data: bytes) -> list[pb.ConverseRequest]:
    """Parse `-B` data as ghz does."""
    messages, pos = [], 0
    while pos < len(data):
        size, pos = _read_varint(data, pos)
        messages.append(pb.ConverseRequest.FromString(data[pos : pos + size]))
        pos += size
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["text", "wav"], help="a typed turn or a WAV's speech")
    parser.add_argument("value", help="the text, or the path of a 16-bit PCM mono WAV")
    parser.add_argument("--assistant", default="default")
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio chunk length (10-200)")
    parser.add_argument("--text-only", action="store_true", help="no reply audio")
    parser.add_argument("--binary", action="store_true", help="ghz -B format instead of JSON")
    args = parser.parse_args(argv)
    if args.kind == "text":
        messages = text_call(args.value, args.assistant, text_only=args.text_only)
    else:
        pcm, rate = read_wav(Path(args.value))
        messages = audio_call(
            pcm, rate, args.assistant, chunk_ms=args.chunk_ms, text_only=args.text_only
        )
    if args.binary:
        sys.stdout.buffer.write(to_binary(messages))
    else:
        print(to_json(messages))
    print(f"{len(messages)} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
