"""Mapping between protobuf messages and the runtime's transport-free types."""

from __future__ import annotations

from voiceengine.v1 import converse_pb2 as pb

from engine.audio.formats import PCM16_16K, AudioEncoding, AudioFormat
from engine.runtime import events as ev
from engine.runtime.ports.control_plane import ConfigSource

_ENCODINGS = {
    pb.AUDIO_ENCODING_UNSPECIFIED: AudioEncoding.LINEAR16,
    pb.AUDIO_ENCODING_LINEAR16: AudioEncoding.LINEAR16,
    pb.AUDIO_ENCODING_MULAW: AudioEncoding.MULAW,
}
_ENCODINGS_OUT = {
    AudioEncoding.LINEAR16: pb.AUDIO_ENCODING_LINEAR16,
    AudioEncoding.MULAW: pb.AUDIO_ENCODING_MULAW,
}
_SOURCES: dict[ConfigSource, pb.ConfigSource.ValueType] = {
    "backend": pb.CONFIG_SOURCE_BACKEND,
    "backend_cached": pb.CONFIG_SOURCE_BACKEND_CACHED,
    "local": pb.CONFIG_SOURCE_LOCAL,
}
_STATUSES = {
    ev.ResponseStatus.COMPLETED: pb.RESPONSE_STATUS_COMPLETED,
    ev.ResponseStatus.INTERRUPTED: pb.RESPONSE_STATUS_INTERRUPTED,
    ev.ResponseStatus.FAILED: pb.RESPONSE_STATUS_FAILED,
}
_END_REASONS = {
    ev.EndReason.CLIENT_ENDED: pb.END_REASON_CLIENT_ENDED,
    ev.EndReason.ASSISTANT_ENDED: pb.END_REASON_ASSISTANT_ENDED,
    ev.EndReason.SERVER_SHUTDOWN: pb.END_REASON_SERVER_SHUTDOWN,
    ev.EndReason.IDLE_TIMEOUT: pb.END_REASON_IDLE_TIMEOUT,
    ev.EndReason.STREAM_BROKEN: pb.END_REASON_STREAM_BROKEN,
    ev.EndReason.PROTOCOL_ERROR: pb.END_REASON_PROTOCOL_ERROR,
    ev.EndReason.INPUT_CLOSED: pb.END_REASON_INPUT_CLOSED,
    ev.EndReason.LIMIT_REACHED: pb.END_REASON_LIMIT_REACHED,
    ev.EndReason.CLIENT_NOT_READING: pb.END_REASON_LIMIT_REACHED,
}

_TOOL_OUTCOMES = {
    "ok": pb.TOOL_OUTCOME_OK,
    "error": pb.TOOL_OUTCOME_ERROR,
    "rejected": pb.TOOL_OUTCOME_REJECTED,
    "timeout": pb.TOOL_OUTCOME_TIMEOUT,
    "cancelled": pb.TOOL_OUTCOME_CANCELLED,
}


def audio_format_from_proto(message: pb.AudioFormat, field: str) -> AudioFormat:
    """The runtime format for a proto AudioFormat (defaults: LINEAR16, 16 kHz).

    Raises ValueError naming ``field`` when the combination is not supported.
    """
    encoding = _ENCODINGS.get(message.encoding)
    if encoding is None:
        raise ValueError(f"{field}.encoding: unknown value {message.encoding}")
    rate = message.sample_rate_hz or PCM16_16K.sample_rate_hz
    if encoding is AudioEncoding.MULAW and not message.sample_rate_hz:
        rate = 8000
    try:
        return AudioFormat(encoding, rate)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def audio_format_to_proto(fmt: AudioFormat) -> pb.AudioFormat:
    """The proto form of a runtime format."""
    return pb.AudioFormat(encoding=_ENCODINGS_OUT[fmt.encoding], sample_rate_hz=fmt.sample_rate_hz)


def config_source_to_proto(source: ConfigSource) -> pb.ConfigSource.ValueType:
    """The proto enum for where an assistant's config came from."""
    return _SOURCES[source]


def event_to_proto(event: ev.Event) -> pb.ConverseResponse:
    """One runtime event as a ConverseResponse (audio is handled by the edge)."""
    match event:
        case ev.SpeechStarted():
            return pb.ConverseResponse(
                speech_started=pb.SpeechStarted(
                    utterance_id=event.utterance_id, offset_ms=event.offset_ms
                )
            )
        case ev.SpeechStopped():
            return pb.ConverseResponse(
                speech_stopped=pb.SpeechStopped(
                    utterance_id=event.utterance_id, offset_ms=event.offset_ms
                )
            )
        case ev.Transcript():
            return pb.ConverseResponse(
                transcript=pb.Transcript(
                    utterance_id=event.utterance_id,
                    text=event.text,
                    is_final=event.is_final,
                    confidence=event.confidence,
                    source=event.source,
                )
            )
        case ev.AssistantText():
            return pb.ConverseResponse(
                assistant_text=pb.AssistantText(response_id=event.response_id, delta=event.delta)
            )
        case ev.Interrupted():
            return pb.ConverseResponse(
                interrupted=pb.Interrupted(response_id=event.response_id, heard_ms=event.heard_ms)
            )
        case ev.ResponseResumed():
            return pb.ConverseResponse(
                response_resumed=pb.ResponseResumed(
                    response_id=event.response_id,
                    resumed_response_id=event.resumed_response_id,
                    resumed_from_text=event.resumed_from_text,
                    heard_text=event.heard_text,
                )
            )
        case ev.ResponseDone():
            return pb.ConverseResponse(
                response_done=pb.ResponseDone(
                    response_id=event.response_id,
                    status=_STATUSES[event.status],
                    text=event.text,
                    heard_text=event.heard_text,
                    audio_ms=event.audio_ms,
                )
            )
        case ev.TurnMetrics():
            return pb.ConverseResponse(metrics=_metrics(event))
        case ev.ErrorEvent():
            return pb.ConverseResponse(
                error=pb.Error(
                    code=event.code, message=event.message, response_id=event.response_id
                )
            )
        case ev.SessionEnded():
            h = event.history
            return pb.ConverseResponse(
                ended=pb.SessionEnded(
                    reason=_END_REASONS[event.reason],
                    detail=event.detail,
                    history=pb.HistoryStatus(
                        enabled=h.enabled,
                        enqueued=h.enqueued,
                        delivered=h.delivered,
                        pending=h.pending,
                        spooled=h.spooled,
                        dropped=h.dropped,
                        dead_lettered=h.dead_lettered,
                        finalized=h.finalized,
                    ),
                )
            )
        case ev.Draining():
            return pb.ConverseResponse(draining=pb.Draining(remaining_ms=event.remaining_ms))
        case ev.ToolCall() | ev.ToolStarted() | ev.ToolFinished() | ev.Transfer():
            return _tool_event(event)
        case ev.AudioChunk():
            return pb.ConverseResponse(
                audio=pb.AudioOutput(
                    response_id=event.response_id,
                    data=event.data,
                    offset_ms=event.offset_ms,
                    duration_ms=event.duration_ms,
                )
            )


def _tool_event(
    event: ev.ToolCall | ev.ToolStarted | ev.ToolFinished | ev.Transfer,
) -> pb.ConverseResponse:
    match event:
        case ev.ToolCall():
            return pb.ConverseResponse(
                tool_call=pb.ToolCall(
                    response_id=event.response_id,
                    tool_call_id=event.tool_call_id,
                    name=event.name,
                    arguments_json=event.arguments_json,
                    deadline_ms=event.deadline_ms,
                )
            )
        case ev.ToolStarted():
            return pb.ConverseResponse(
                tool_started=pb.ToolStarted(
                    response_id=event.response_id,
                    tool_call_id=event.tool_call_id,
                    name=event.name,
                    executor=event.executor,
                )
            )
        case ev.ToolFinished():
            return pb.ConverseResponse(
                tool_finished=pb.ToolFinished(
                    response_id=event.response_id,
                    tool_call_id=event.tool_call_id,
                    name=event.name,
                    executor=event.executor,
                    outcome=_TOOL_OUTCOMES.get(event.outcome, pb.TOOL_OUTCOME_UNSPECIFIED),
                    latency_ms=event.latency_ms,
                )
            )
        case ev.Transfer():
            return pb.ConverseResponse(
                transfer=pb.Transfer(response_id=event.response_id, target=event.target)
            )


def _metrics(event: ev.TurnMetrics) -> pb.TurnMetrics:
    message = pb.TurnMetrics(response_id=event.response_id, utterance_id=event.utterance_id)
    if event.end_of_speech_to_final_transcript_ms is not None:
        message.end_of_speech_to_final_transcript_ms = event.end_of_speech_to_final_transcript_ms
    if event.llm_first_token_ms is not None:
        message.llm_first_token_ms = event.llm_first_token_ms
    if event.tts_first_audio_ms is not None:
        message.tts_first_audio_ms = event.tts_first_audio_ms
    if event.end_of_speech_to_first_audio_ms is not None:
        message.end_of_speech_to_first_audio_ms = event.end_of_speech_to_first_audio_ms
    if event.tool_ms is not None:
        message.tool_ms = event.tool_ms
    return message
