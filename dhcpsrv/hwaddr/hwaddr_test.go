package hwaddr

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpellings(t *testing.T) {
	want := MAC{0x00, 0x23, 0x32, 0x2f, 0x40, 0x3c}
	for _, in := range []string{
		"00:23:32:2F:40:3C",
		"00:23:32:2f:40:3c",
		"00-23-32-2f-40-3c",
		"00-23-32-2F-40-3C",
		"0023.322f.403c",
		"0023.322F.403C",
		"0023322f403c",
		"0:23:32:2f:40:3c",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := Parse(in)
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.Equal(t, "00:23:32:2f:40:3c", got.String())
			assert.Equal(t, "00-23-32-2f-40-3c", got.Hyphen())
			assert.Equal(t, "0023322f403c", got.Raw())
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"", "zz", ";reboot", "00:23:32:2f:40", "00:23:32:2f:40:3c:00",
		"00:23-32:2f:40:3c", "00:23:32:2f:40:3g", "000:23:32:2f:40:3c",
		"0023.322f.403", "0023.322f.403c.0000", "0023322f403", "0023322f403cc",
		"00:23:32:2f:40:", "::::::", "00:23:32:2f:40:3c;reboot",
		"02:00:5e:10:00:00:00:01", "gg23322f403c", "0023.322f.40zz",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := Parse(in)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
}

func TestTextRoundTrip(t *testing.T) {
	m := MustParse("00-30-48-FB-E2-44")
	b, err := m.MarshalText()
	require.NoError(t, err)
	var back MAC
	require.NoError(t, back.UnmarshalText(b))
	assert.Equal(t, m, back)
	require.Error(t, back.UnmarshalText([]byte("nope")))
	assert.False(t, m.IsZero())
	assert.True(t, MAC{}.IsZero())
	h, err := FromHardwareAddr(net.HardwareAddr{0, 0x30, 0x48, 0xfb, 0xe2, 0x44})
	require.NoError(t, err)
	assert.Equal(t, m, h)
	assert.Equal(t, "00:30:48:fb:e2:44", m.HardwareAddr().String())
	_, err = FromHardwareAddr(net.HardwareAddr{1, 2, 3})
	require.ErrorIs(t, err, ErrInvalid)
	assert.Panics(t, func() { MustParse("x") })
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// round-trips through every canonical form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"00:23:32:2F:40:3C", "00-23-32-2f-40-3c", "0023.322f.403c", "0023322f403c", "", ";reboot", "0:1:2:3:4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		for _, form := range []string{m.String(), m.Hyphen(), m.Raw()} {
			back, err := Parse(form)
			if err != nil || back != m {
				t.Fatalf("%q -> %v -> %q -> %v, %v", s, m, form, back, err)
			}
		}
	})
}

// TestParseRefusesSurroundings: a MAC with anything around it is not a MAC
// (issue #16: mac=…%0A was accepted and rendered).
func TestParseRefusesSurroundings(t *testing.T) {
	for _, s := range []string{"00:23:32:2f:40:3c\n", " 00:23:32:2f:40:3c", "00:23:32:2f:40:3c ", "\t0023.322f.403c", "0023322f403c\r"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
