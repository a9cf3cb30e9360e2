package pkibridge

import (
	"bytes"
	"strings"
	"testing"
)

// cmsIsDER is the shortcut past cmsToDER for input that is already DER. It
// must say yes exactly when cmsToDER would hand the input back unchanged.

func cmsDERSeeds() [][]byte {
	long := bytes.Repeat([]byte{0x41}, 300)
	deep := func(n int) []byte {
		b := []byte{0x05, 0x00}
		for i := 0; i < n; i++ {
			b = cmsAppendTLV(nil, 0x30, b)
		}
		return b
	}
	return [][]byte{
		{0x30, 0x00},
		{0x30, 0x03, 0x02, 0x01, 0x01},
		{0x30, 0x81, 0x03, 0x02, 0x01, 0x01},             // non-minimal length
		{0x30, 0x82, 0x00, 0x03, 0x02, 0x01, 0x01},       // leading zero
		{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00},       // indefinite
		{0x24, 0x06, 0x04, 0x01, 0x61, 0x04, 0x01, 0x62}, // constructed OCTET STRING
		{0x2c, 0x03, 0x0c, 0x01, 0x61},                   // constructed UTF8String
		{0xa0, 0x03, 0x02, 0x01, 0x01},
		{0x31, 0x02, 0x00, 0x00},
		{0x30, 0x02, 0x1f, 0x01},
		{0x30, 0x03, 0x02, 0x01, 0x01, 0x00},
		{0x30, 0x85, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00},
		{0x30, 0x84, 0x01, 0x00, 0x00, 0x00},
		{0x04},
		{},
		append([]byte{0x04, 0x82, 0x01, 0x2c}, long...),
		append([]byte{0x04, 0x83, 0x00, 0x01, 0x2c}, long...),
		cmsAppendTLV(nil, 0x30, cmsAppendTLV(nil, 0x04, long)),
		deep(cmsMaxDepth),
		deep(cmsMaxDepth + 1),
		deep(cmsMaxDepth + 2),
		[]byte(strings.Repeat("\x30\x80", 10)),
	}
}

func cmsCheckIsDER(t *testing.T, in []byte) {
	t.Helper()
	fast := cmsIsDER(in, 0)
	out, err := cmsToDER(in)
	same := err == nil && bytes.Equal(out, in)
	if fast != same {
		t.Fatalf("cmsIsDER %v, but cmsToDER gives %x, %v for %x", fast, out, err, in)
	}
}

func TestCMSIsDERMatchesToDER(t *testing.T) {
	yes := 0
	for _, in := range cmsDERSeeds() {
		cmsCheckIsDER(t, in)
		if cmsIsDER(in, 0) {
			yes++
		}
	}
	if yes == 0 || yes == len(cmsDERSeeds()) {
		t.Fatalf("%d of %d seeds are DER: the seeds do not cover both answers", yes, len(cmsDERSeeds()))
	}
}

func FuzzCMSIsDER(f *testing.F) {
	for _, s := range cmsDERSeeds() {
		f.Add(s)
	}
	f.Fuzz(cmsCheckIsDER)
}
