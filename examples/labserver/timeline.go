package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Stages of the boot flow, in order, as the timeline names them.
const (
	stageDiscover   = "dhcp-discover"
	stageLease      = "dhcp-lease"
	stageTFTP       = "tftp"
	stageHTTPBoot   = "http-boot" // a file of the TFTP tree fetched over HTTP (/grub/…)
	stageGrub       = "grub"
	stageKernel     = "kernel"
	stageInitrd     = "initrd"
	stageAsset      = "asset"
	stageIgnition   = "ignition"
	stageInstalling = "installed-config" // the installer fetched the installed system's config
	stageInstalled  = "installed"        // the installed system reported its first boot (or an admin said so)
	stageLocalBoot  = "local-boot"
	stageFailed     = "failed" // a step answered with an error; the detail says why
	stageReinstall  = "reinstall-requested"
)

// Limits that keep the timeline's memory bounded whatever the network does.
const (
	maxMachines = 4096
	maxEvents   = 64
)

// event is one step a machine took.
type event struct {
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
	Detail string    `json:"detail,omitempty"`
	IP     string    `json:"ip,omitempty"`
}

type machineRecord struct {
	MAC       string    `json:"mac"`
	IP        string    `json:"ip,omitempty"`
	Hostname  string    `json:"hostname,omitempty"`
	Installed bool      `json:"installed"`
	Last      time.Time `json:"last_seen"`
	Events    []event   `json:"events"`
	// Stage and Failure summarise the current boot (see progress).
	Stage   string `json:"stage,omitempty"`
	Failure string `json:"failure,omitempty"`

	kernel string
	initrd []string
}

// timeline records what every machine did, keyed by MAC; requests that
// carry only an IP (TFTP, assets) are attributed through the IP→MAC map
// learnt from DHCP leases and /grub requests.
type timeline struct {
	mu       sync.Mutex
	machines map[hwaddr.MAC]*machineRecord
	byIP     map[netip.Addr]hwaddr.MAC
	now      func() time.Time
	// installed tells whether a machine is installed: the install state is
	// the one source of truth, read when the timeline is shown (so it is
	// right after a restart too). nil: never.
	installed func(hwaddr.MAC) bool
	// names gives the inventory's host names, for machines the timeline
	// has not heard a name from; nil: none.
	names func() map[hwaddr.MAC]string
	// onRecord, if set, gets every event recorded here (t.mu held; it
	// must not block): etcd_timeline.go shares them with other servers.
	onRecord func(hwaddr.MAC, event)
}

func newTimeline() *timeline {
	return &timeline{machines: map[hwaddr.MAC]*machineRecord{}, byIP: map[netip.Addr]hwaddr.MAC{}, now: time.Now}
}

func (t *timeline) record(mac hwaddr.MAC, ip netip.Addr, stage, detail string) {
	if mac.IsZero() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recordLocked(mac, ip, stage, detail)
}

// learn notes that mac is at ip (from a request that names both, such as
// GRUB's grub.cfg-01-<mac>) without recording an event.
func (t *timeline) learn(mac hwaddr.MAC, ip netip.Addr) {
	if mac.IsZero() || !ip.IsValid() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.machines[mac]; !ok {
		if len(t.machines) >= maxMachines {
			t.evictOldest()
		}
		t.machines[mac] = &machineRecord{MAC: mac.String(), Last: t.now()}
	}
	t.machines[mac].IP = ip.Unmap().String()
	if len(t.byIP) >= 4*maxMachines {
		clear(t.byIP)
	}
	t.byIP[ip.Unmap()] = mac
}

// machineLocked returns mac's record, made (after evicting the oldest
// record when the timeline is full) if there is none; t.mu held.
func (t *timeline) machineLocked(mac hwaddr.MAC) *machineRecord {
	r := t.machines[mac]
	if r == nil {
		if len(t.machines) >= maxMachines {
			t.evictOldest()
		}
		r = &machineRecord{MAC: mac.String()}
		t.machines[mac] = r
	}
	return r
}

func (t *timeline) recordLocked(mac hwaddr.MAC, ip netip.Addr, stage, detail string) {
	r := t.machineLocked(mac)
	now := t.now()
	r.Last = now
	e := event{Time: now, Stage: stage, Detail: detail}
	if ip.IsValid() {
		ip = ip.Unmap()
		e.IP = ip.String()
		r.IP = e.IP
		if len(t.byIP) >= 4*maxMachines {
			clear(t.byIP)
		}
		t.byIP[ip] = mac
	}
	if len(r.Events) >= maxEvents {
		r.Events = slices.Delete(r.Events, 0, 1)
	}
	r.Events = append(r.Events, e)
	if t.onRecord != nil {
		t.onRecord(mac, e)
	}
}

func (t *timeline) evictOldest() {
	var oldest hwaddr.MAC
	var when time.Time
	for m, r := range t.machines {
		if when.IsZero() || r.Last.Before(when) {
			oldest, when = m, r.Last
		}
	}
	delete(t.machines, oldest)
}

// macOf returns the MAC last seen at ip.
func (t *timeline) macOf(ip netip.Addr) (hwaddr.MAC, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.byIP[ip.Unmap()]
	return m, ok
}

// recordIP records an event for whatever machine holds ip; unknown IPs are
// dropped (there is no MAC to key them by).
func (t *timeline) recordIP(ip netip.Addr, stage, detail string) {
	if m, ok := t.macOf(ip); ok {
		t.record(m, ip, stage, detail)
	}
}

// setBoot remembers the kernel and initrd paths a machine was told to load,
// so that an asset fetch can be named "kernel" or "initrd".
func (t *timeline) setBoot(mac hwaddr.MAC, hostname, kernel string, initrd []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.machines[mac]; r != nil {
		r.kernel, r.initrd = kernel, slices.Clone(initrd)
		if hostname != "" {
			r.Hostname = hostname
		}
	}
}

// assetStage classifies an asset request from ip.
func (t *timeline) assetStage(ip netip.Addr, path string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.byIP[ip.Unmap()]
	if !ok {
		return stageAsset
	}
	r := t.machines[m]
	switch {
	case r == nil:
	case r.kernel != "" && strings.HasSuffix(r.kernel, path):
		return stageKernel
	case slices.ContainsFunc(r.initrd, func(s string) bool { return strings.HasSuffix(s, path) }):
		return stageInitrd
	}
	return stageAsset
}

func (t *timeline) snapshot() []machineRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]machineRecord, 0, len(t.machines))
	var names map[hwaddr.MAC]string
	if t.names != nil {
		names = t.names()
	}
	for mac, r := range t.machines {
		c := *r
		if c.Hostname == "" {
			c.Hostname = names[mac]
		}
		c.Events = slices.Clone(r.Events)
		c.Installed = t.installed != nil && t.installed(mac)
		p := progress(c, t.now())
		c.Stage, c.Failure = p.Current, p.Failure
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b machineRecord) int { return strings.Compare(a.MAC, b.MAC) })
	return out
}

// ServeHTTP serves /machines as HTML, or JSON with ?format=json or an
// Accept: application/json header.
func (t *timeline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ms := t.snapshot()
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ms)
		return
	}
	var b bytes.Buffer
	if err := machinesPage.Execute(&b, pageData{Rows: rows(ms, t.now()), Now: t.now()}); err != nil {
		http.Error(w, "machines page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}
