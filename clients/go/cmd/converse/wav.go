package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

const (
	wavFormatPCM   = 1
	wavFormatMulaw = 7
)

// wavAudio is a mono WAV file's audio in one of the stream's encodings.
type wavAudio struct {
	Encoding     string // "LINEAR16" or "MULAW"
	SampleRateHz uint32
	Data         []byte
}

// readWav reads mono 16-bit PCM or 8-bit G.711 mu-law WAV files.
func readWav(path string) (*wavAudio, error) {
	file, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(file) < 12 || string(file[0:4]) != "RIFF" || string(file[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%s: not a WAV file", path)
	}
	var format, channels, bits uint16
	var rate uint32
	var data []byte
	haveFmt := false
	for pos := 12; pos+8 <= len(file); {
		id := string(file[pos : pos+4])
		size := int(binary.LittleEndian.Uint32(file[pos+4 : pos+8]))
		end := pos + 8 + size
		if end > len(file) {
			end = len(file)
		}
		body := file[pos+8 : end]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return nil, fmt.Errorf("%s: short fmt chunk", path)
			}
			format = binary.LittleEndian.Uint16(body[0:2])
			channels = binary.LittleEndian.Uint16(body[2:4])
			rate = binary.LittleEndian.Uint32(body[4:8])
			bits = binary.LittleEndian.Uint16(body[14:16])
			haveFmt = true
		case "data":
			data = body
		}
		pos += 8 + size + size%2 // chunks are padded to an even size
	}
	if !haveFmt || data == nil {
		return nil, fmt.Errorf("%s: WAV without fmt or data chunk", path)
	}
	if channels != 1 {
		return nil, fmt.Errorf("%s: %d channels; send mono audio", path, channels)
	}
	switch {
	case format == wavFormatPCM && bits == 16:
		return &wavAudio{"LINEAR16", rate, data}, nil
	case format == wavFormatMulaw && bits == 8:
		return &wavAudio{"MULAW", rate, data}, nil
	}
	return nil, fmt.Errorf("%s: WAV format %d/%d bit; use 16-bit PCM or mu-law", path, format, bits)
}

// writeWav writes mono audio in the stream's encoding ("LINEAR16" or "MULAW").
func writeWav(path, encoding string, rate uint32, data []byte) error {
	mulaw := encoding == "MULAW"
	var formatTag, bytesPerSample uint16 = wavFormatPCM, 2
	fmtSize := uint32(16)
	if mulaw {
		formatTag, bytesPerSample, fmtSize = wavFormatMulaw, 1, 18 // non-PCM: with cbSize
	}
	pad := uint32(len(data) % 2)
	var out bytes.Buffer
	le := func(v interface{}) { _ = binary.Write(&out, binary.LittleEndian, v) }
	out.WriteString("RIFF")
	le(4 + 8 + fmtSize + 8 + uint32(len(data)) + pad)
	out.WriteString("WAVEfmt ")
	le(fmtSize)
	le(formatTag)
	le(uint16(1))
	le(rate)
	le(rate * uint32(bytesPerSample))
	le(bytesPerSample)
	le(8 * bytesPerSample)
	if mulaw {
		le(uint16(0))
	}
	out.WriteString("data")
	le(uint32(len(data)))
	out.Write(data)
	if pad == 1 {
		out.WriteByte(0)
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}
