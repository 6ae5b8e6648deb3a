package grubcfg

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/tftpsrv"
)

// TestFirstStageTFTP: every name GRUB 2.06 asks for gets the first stage;
// the MAC-named one gets it pinned to that MAC and tells the hook who is
// at that address; everything else falls through to the TFTP root.
func TestFirstStageTFTP(t *testing.T) {
	f := FirstStage{HTTPAddr: "10.99.0.1:8080", Serial: &Serial{}}
	type seen struct {
		mac    hwaddr.MAC
		client netip.AddrPort
	}
	var hook []seen
	h, err := FirstStageTFTP(f, func(mac hwaddr.MAC, client netip.AddrPort) { hook = append(hook, seen{mac, client}) })
	require.NoError(t, err)
	plain, err := f.Render()
	require.NoError(t, err)
	mac := hwaddr.MustParse("52:54:00:12:34:56")
	pf := f
	pf.MAC = mac
	pinned, err := pf.Render()
	require.NoError(t, err)
	client := netip.MustParseAddrPort("10.99.0.100:1234")

	ask := func(name string) ([]byte, error) {
		return h.ServeTFTP(context.Background(), &tftpsrv.Request{Filename: name, Client: client})
	}
	names := FirstStageNames("grub", mac, netip.MustParseAddr("10.99.0.100"))
	require.Equal(t, "grub/grub.cfg-01-52-54-00-12-34-56", names[0])
	for i, name := range names {
		b, err := ask(name)
		require.NoError(t, err, name)
		want := plain
		if i == 0 {
			want = pinned
		}
		assert.Equal(t, string(want), string(b), name)
		requireGRUBAccepts(t, string(b))
	}
	assert.Equal(t, []seen{{mac, client}}, hook, "the hook hears the MAC-named request only")

	for _, name := range []string{"grub/x86_64-efi/core.efi", "grub/i386-pc/normal.mod", "grub/grub.cfg-01-zz-54-00-12-34-56",
		"grub/grub.cfg-0a63", "grub/grub.cfg.bak", "grub/x86_64-efi/grub.cfg-"} {
		_, err := ask(name)
		assert.ErrorIs(t, err, tftpsrv.ErrNotHandled, name)
	}
	assert.Len(t, hook, 1)

	// A first stage pinned by the caller stays pinned; no hook is fine.
	other := f
	other.MAC = hwaddr.MustParse("52:54:00:00:00:01")
	h, err = FirstStageTFTP(other, nil)
	require.NoError(t, err)
	b, err := h.ServeTFTP(context.Background(), &tftpsrv.Request{Filename: names[0], Client: client})
	require.NoError(t, err)
	assert.Contains(t, string(b), "52:54:00:00:00:01")
	assert.NotContains(t, string(b), "52:54:00:12:34:56")

	// A bad first stage is an error at construction.
	_, err = FirstStageTFTP(FirstStage{}, nil)
	assert.ErrorIs(t, err, ErrBadOption)
	_, err = FirstStageTFTP(FirstStage{HTTPAddr: "x;reboot:80"}, nil)
	assert.ErrorIs(t, err, ErrBadOption)
}
