package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/tftpsrv"
)

func (l *lab) grubOptions() grubcfg.Options {
	o := grubcfg.Options{}
	if l.s.Serial {
		o.Serial = &grubcfg.Serial{Speed: l.s.SerialSpeed}
	}
	return o
}

func (l *lab) firstStage(mac hwaddr.MAC) grubcfg.FirstStage {
	// TFTP: Debian's signed GRUB (Secure Boot) reads the same grub.cfg
	// and has no http: it loads grub?mac=… over TFTP (tftpConfig).
	f := grubcfg.FirstStage{HTTPAddr: l.s.BaseURL.Host, MAC: mac, OnFailure: grubcfg.FailPrompt, TFTP: true}
	if l.s.Serial {
		f.Serial = &grubcfg.Serial{Speed: l.s.SerialSpeed}
	}
	return f
}

// grubHandler serves /grub: the machine's install config, or a local-disk
// boot once it has installed.
func (l *lab) grubHandler() http.Handler {
	return grubcfg.CloseAfterResponse(l.newGrubHandler(l.grubOptions()))
}

// newGrubHandler is the /grub handler with opts (the per-machine
// configuration over TFTP uses one with Options.TFTP).
func (l *lab) newGrubHandler(opts grubcfg.Options) *grubcfg.Handler {
	return &grubcfg.Handler{
		Resolver:  l.resolver,
		Options:   opts,
		Logger:    l.log.With("component", "grub"),
		LocalBoot: func(m *profile.Machine) bool { return !m.MAC.IsZero() && l.state.isInstalled(m.MAC) },
		OnServe: func(r *http.Request, m *profile.Machine, local bool) {
			stage, detail := stageGrub, "profile "+m.Profile.ID
			if local {
				stage, detail = stageLocalBoot, "installed: boot the local disk"
			}
			l.event(m.MAC, remoteIP(r), stage, detail)
			if !local {
				l.rememberBoot(m)
			}
		},
	}
}

// rememberBoot tells the timeline which paths are this machine's kernel and
// initrds, so that their fetches can be named. Only those strings are
// rendered (a plain path costs a map lookup), not the kernel arguments.
func (l *lab) rememberBoot(m *profile.Machine) {
	kernel, err := m.Render(m.Profile.Boot.Kernel)
	if err != nil {
		return
	}
	initrd := make([]string, 0, len(m.Profile.Boot.Initrd))
	for _, s := range m.Profile.Boot.Initrd {
		if r, err := m.Render(s); err == nil {
			initrd = append(initrd, r)
		}
	}
	l.timeline.setBoot(m.MAC, m.Hostname, kernel, initrd)
}

// firstStageHTTP serves /grub.cfg for UEFI HTTP boot.
func (l *lab) firstStageHTTP() http.Handler {
	h, err := grubcfg.FirstStageHandler(l.firstStage(hwaddr.MAC{}))
	if err != nil {
		l.log.Error("first stage", "err", err)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			profile.Error(w, http.StatusInternalServerError, "first stage: "+err.Error())
		})
	}
	return grubcfg.CloseAfterResponse(h)
}

// newIgnitionHandler builds the /ignition handler. Its Check compiles every
// Ignition template of a newly loaded inventory, so a broken template is
// rejected at load (and on SIGHUP), not when a machine boots; the handler
// then serves what Check compiled.
//
// With ignition_clients "leased" a machine's config (SSH keys, secrets in
// metadata) goes only to the address this server's DHCP leased to that MAC,
// and to admin_allow. Fetching the installed config (os=installed) is the
// installer at work: a timeline stage, never evidence that the install
// finished (see markInstalled).
func (l *lab) newIgnitionHandler() *ignition.Handler {
	h := &ignition.Handler{
		Logger: l.log.With("component", "ignition"),
		OnServe: func(r *http.Request, m *profile.Machine) {
			ip := remoteIP(r)
			if m.Attrs[profile.KeyOS] == "installed" {
				l.event(m.MAC, ip, stageInstalling, "installed config fetched, profile "+m.Profile.ID)
				return
			}
			l.event(m.MAC, ip, stageIgnition, "profile "+m.Profile.ID)
		},
	}
	if l.s.IgnitionLeased {
		h.Guard = ignition.GuardFunc(func(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
			return l.holdsLease(ctx, mac, remote) || l.isAdmin(remote)
		})
	}
	return h
}

// holdsLease reports whether remote is the address this server's DHCP has
// leased (and not yet expired) to mac. A lease store that cannot answer
// says no.
func (l *lab) holdsLease(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
	srv := l.dhcp.Load()
	if srv == nil || mac.IsZero() || !remote.IsValid() {
		return false
	}
	le, ok, err := srv.Lease(ctx, mac)
	if err != nil {
		l.log.Error("lease lookup failed", "mac", mac, "err", err)
		return false
	}
	return ok && le.IP == remote.Unmap()
}

// isAdmin reports whether remote is in admin_allow.
func (l *lab) isAdmin(remote netip.Addr) bool {
	for _, p := range l.s.AdminAllow {
		if p.Contains(remote) {
			return true
		}
	}
	return false
}

// firstStageTFTP answers the first-stage names GRUB asks for over TFTP
// (grubcfg.FirstStageTFTP); a grub.cfg-01-<mac> request tells the timeline
// which machine is at that address (the transfer itself is recorded by
// onTransfer).
func (l *lab) firstStageTFTP() (tftpsrv.Handler, error) {
	return grubcfg.FirstStageTFTP(l.firstStage(hwaddr.MAC{}), func(mac hwaddr.MAC, client netip.AddrPort) {
		l.timeline.learn(mac, client.Addr())
	})
}

// startDHCP runs the DHCP server on the configured interface only.
func (l *lab) startDHCP(ctx context.Context) error {
	d := l.s.DHCP
	var leases dhcpsrv.LeaseStore = dhcpsrv.NewMemoryStore()
	switch {
	case l.shared != nil:
		leases = l.shared.leases // etcd.go: shared with the other labservers
	case l.s.State != "":
		jo := dhcpsrv.JournalOptions{SyncInterval: d.LeaseSync}
		j, err := dhcpsrv.OpenJournalOptions(l.s.State, jo)
		if errors.Is(err, dhcpsrv.ErrCorrupt) && l.s.DiscardCorruptState {
			aside, merr := dhcpsrv.MoveAside(dhcpsrv.JournalPath(l.s.State))
			if merr != nil {
				return fmt.Errorf("leases: %w; moving it aside: %v", err, merr)
			}
			l.log.Error("CORRUPT LEASE JOURNAL MOVED ASIDE: starting with no leases; clients keep their addresses until they renew",
				"moved_to", aside, "err", err)
			j, err = dhcpsrv.OpenJournalOptions(l.s.State, jo)
		}
		if errors.Is(err, dhcpsrv.ErrCorrupt) {
			return fmt.Errorf("leases: %w (the file is left as it is: repair it, or start once with -discard-corrupt-state to move it aside and start empty)", err)
		}
		if err != nil {
			return fmt.Errorf("leases: %w", err)
		}
		leases = j
	}
	files, err := dhcpsrv.BootFilesByName(d.BootFiles)
	if err != nil {
		return fmt.Errorf("boot_files: %w", err)
	}
	srv := &dhcpsrv.Server{
		Interface:    d.Interface,
		ServerIP:     d.ServerIP,
		Subnets:      []dhcpsrv.Subnet{{Prefix: d.Subnet, Ranges: []dhcpsrv.Range{{From: d.Range[0], To: d.Range[1]}}, Router: d.Router, DNS: d.DNS, Domain: d.Domain, LeaseTime: d.LeaseTime}},
		Reservations: labReservations{l},
		Boot:         l.bootPolicy(files),
		Leases:       leases,
		ProxyDHCP:    d.Proxy,
		Logger:       l.log.With("component", "dhcp"),
		OnDiscover: func(e dhcpsrv.Event) {
			l.event(e.MAC, netip.Addr{}, stageDiscover, fmt.Sprintf("arch %s, boot file %s", e.Arch, e.BootFile))
		},
		OnLease: func(le dhcpsrv.Lease) {
			l.event(le.MAC, le.IP, stageLease, fmt.Sprintf("%s until %s", le.IP, le.Expires.Format(time.TimeOnly)))
			l.dnsLeases.Bind(le.Hostname, le.IP, le.Expires)
		},
		OnRelease: func(le dhcpsrv.Lease) { l.dnsLeases.Unbind(le.Hostname, le.IP) },
	}
	// Fail fast on configuration and bind errors (wrong interface, port
	// in use): Listen reports them before anything is served.
	conns, err := srv.Listen(ctx)
	if err != nil {
		return err
	}
	l.dhcp.Store(srv)
	l.setAddr("dhcp", d.Interface)
	l.serve("dhcp", func() error {
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		return srv.Serve(ctx, conns...)
	})
	if d.EndIPv6Wait {
		l.startRouterAdvertiser(ctx, d.Interface)
	}
	return nil
}

// startRouterAdvertiser answers IPv6 router solicitations on the DHCP
// interface (dhcpsrv.RouterAdvertiser), so iPXE does not wait ~15 s for an
// IPv6 router before it boots over DHCPv4. It is an optimisation: when the
// socket cannot be opened the lab still boots, slower, and the log says why.
func (l *lab) startRouterAdvertiser(ctx context.Context, iface string) {
	ra := &dhcpsrv.RouterAdvertiser{Interface: iface, Logger: l.log.With("component", "ra")}
	conn, err := ra.Listen(ctx)
	if err != nil {
		l.log.Warn("not answering IPv6 router solicitations: iPXE clients will wait ~15 s for an IPv6 router before booting "+
			"(needs CAP_NET_RAW; set dhcp.end_ipv6_wait: false to silence this)", "err", err)
		return
	}
	l.serve("ra", func() error {
		defer conn.Close()
		return ra.Serve(ctx, conn)
	})
}

// labReservations are the fixed addresses DHCP hands out: dhcp.reservations
// from the config first, then every inventory host whose "ip" lies in the
// DHCP subnet, read from the current inventory on each request (a SIGHUP
// reload reaches DHCP at once).
type labReservations struct{ l *lab }

func (r labReservations) Reservation(_ context.Context, mac hwaddr.MAC) (dhcpsrv.Reservation, bool, error) {
	d := r.l.s.DHCP
	if c, ok := d.Reservations[mac]; ok {
		ip, _ := netip.ParseAddr(c.IP) // validated at load
		return dhcpsrv.Reservation{IP: ip, Hostname: c.Hostname}, true, nil
	}
	if h, ok := r.l.store.Inventory().Host(mac); ok && h.IP.IsValid() && d.Subnet.Contains(h.IP) {
		return dhcpsrv.Reservation{IP: h.IP, Hostname: h.Hostname}, true, nil
	}
	return dhcpsrv.Reservation{}, false, nil
}

func (r labReservations) ReservedFor(_ context.Context, ip netip.Addr) (hwaddr.MAC, bool, error) {
	d := r.l.s.DHCP
	for mac, c := range d.Reservations {
		if c.IP == ip.String() {
			return mac, true, nil
		}
	}
	if h, ok := r.l.store.Inventory().HostByIP(ip); ok && d.Subnet.Contains(ip) {
		if _, overridden := d.Reservations[h.MAC]; !overridden {
			return h.MAC, true, nil
		}
	}
	return hwaddr.MAC{}, false, nil
}

// leaseFacts tells the profile resolver what DHCP knows about a MAC.
func (l *lab) leaseFacts(ctx context.Context, m hwaddr.MAC) (profile.Facts, bool) {
	srv := l.dhcp.Load()
	if srv == nil {
		return profile.Facts{}, false
	}
	le, ok, err := srv.Lease(ctx, m)
	if err != nil {
		l.log.Error("lease lookup failed", "mac", m, "err", err)
	}
	if !ok {
		return profile.Facts{}, false
	}
	return profile.Facts{IP: le.IP, UUID: le.UUID, Hostname: le.Hostname, Arch: le.Arch.CPU()}, true
}

// tftpOverHTTP serves the TFTP root over HTTP under /grub/ for UEFI HTTP
// boot (the firmware fetches /grub/x86_64-efi/core.efi, GRUB then its
// modules and /grub/grub.cfg, which is generated).
func (l *lab) tftpOverHTTP() http.Handler {
	var files http.Handler = http.NotFoundHandler()
	if l.s.TFTPRoot != "" {
		if root, err := os.OpenRoot(l.s.TFTPRoot); err == nil {
			files = http.FileServerFS(confined{root.FS(), l.log, "tftp_root"})
		}
	}
	first := l.firstStageHTTP()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		if _, ok := grubcfg.FirstStageName(r.URL.Path[1:]); ok {
			first.ServeHTTP(rec, r)
		} else {
			files.ServeHTTP(rec, r)
		}
		// The firmware's (UEFI HTTP boot) and then GRUB's fetches, as the
		// timeline records TFTP transfers; misses are GRUB's probes. (Both
		// handlers always write a status, so the recorder has one.)
		if rec.code == http.StatusOK {
			l.eventIP(remoteIP(r), stageHTTPBoot, r.URL.Path)
		}
	})
}
