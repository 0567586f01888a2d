package main

import (
	"time"

	pb "github.com/voice-engine/voice-engine/clients/go/gen/voiceengine/v1"
)

// player plays the assistant's audio on a virtual clock (this CLI has no speaker) and
// reports progress with `playback` messages, so an interruption keeps what was "heard".
type player struct {
	responseID   string
	receivedMs   uint32
	startedAt    time.Time
	lastReported int64
}

func (p *player) add(audio *pb.AudioOutput, report func()) {
	if p.responseID != audio.ResponseId {
		report() // the previous response's last report
		p.responseID, p.receivedMs, p.startedAt, p.lastReported = audio.ResponseId, 0, time.Now(), -1
	}
	if end := audio.OffsetMs + audio.DurationMs; end > p.receivedMs {
		p.receivedMs = end
	}
}

func (p *player) progress() (string, uint32, bool) {
	if p.responseID == "" {
		return "", 0, false
	}
	played := time.Since(p.startedAt).Milliseconds()
	if played > int64(p.receivedMs) {
		played = int64(p.receivedMs)
	}
	if played <= p.lastReported {
		return "", 0, false
	}
	p.lastReported = played
	return p.responseID, uint32(played), true
}

// pacer sends a WAV's chunks in real time from the main loop.
type pacer struct {
	pieces [][]byte
	next   int
	t0     time.Time
	step   time.Duration
	timer  *time.Timer
}

func (p *pacer) due() <-chan time.Time {
	if p == nil || p.timer == nil {
		return nil
	}
	return p.timer.C
}

func chunk(data []byte, size int) [][]byte {
	var pieces [][]byte
	for at := 0; at < len(data); at += size {
		end := at + size
		if end > len(data) {
			end = len(data)
		}
		pieces = append(pieces, data[at:end])
	}
	return pieces
}
