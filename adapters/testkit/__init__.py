"""Test-kit providers: stand-ins with (almost) no compute, so a benchmark measures the engine.

Selected by name in an assistant definition (``vad.provider: testkit``, ``asr.provider:
testkit``, ``llm.provider: testkit``, ``tts.provider: testkit``); see
``engine/config/agents/testkit.yaml``. They implement the same ports as the embedded
providers, so sessions, pipelines and the gRPC edge run exactly as in production.
"""
