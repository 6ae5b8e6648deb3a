package profile

// Boot is the network-boot part of a profile: what GRUB (or any boot loader)
// loads. Kernel and Initrd are paths on the HTTP server (relative to the
// boot loader's root) or absolute URLs; Args are kernel arguments. Every
// string is a template rendered per machine (see Machine.Render).
type Boot struct {
	Kernel string   `json:"kernel,omitempty"`
	Initrd []string `json:"initrd,omitempty"`
	Args   []string `json:"args,omitempty"`
}

// Profile is a named boot configuration, matchbox compatible:
// profiles/<id>.json in a data directory.
type Profile struct {
	// ID is the key groups refer to. In a data directory it is the file
	// name without ".json" (matchbox behaviour), whatever the JSON says.
	ID string `json:"id"`
	// Name is a human-readable description.
	Name string `json:"name,omitempty"`
	// Boot is what the boot loader loads.
	Boot Boot `json:"boot"`
	// IgnitionID names a template under ignition/ (Ignition JSON or Butane
	// YAML) served at /ignition.
	IgnitionID string `json:"ignition_id,omitempty"`
	// GenericID names a template under generic/ (matchbox's free-form
	// configs); kept for compatibility.
	GenericID string `json:"generic_id,omitempty"`
	// Source is where the profile was loaded from ("" when built in Go).
	Source string `json:"-"`
}

// Group maps machines, by their selector, to a profile and metadata:
// groups/<id>.json in a data directory.
type Group struct {
	// ID identifies the group in logs and errors.
	ID string `json:"id"`
	// Name is a human-readable description.
	Name string `json:"name,omitempty"`
	// Profile is the ID of the profile machines of this group boot.
	Profile string `json:"profile"`
	// Selector lists the attributes a request must carry, all of them, for
	// the group to match. A group without selector is the default group.
	// The "mac" value is normalised at load time.
	Selector map[string]string `json:"selector,omitempty"`
	// Metadata is free-form data for templates ({{.Metadata.key}}, and at the
	// top level of Ignition templates as in matchbox).
	Metadata map[string]any `json:"metadata,omitempty"`
	// Source is where the group was loaded from ("" when built in Go).
	Source string `json:"-"`
}

// Well-known selector keys. Any other key is a free label taken from the
// request's query string.
const (
	KeyMAC      = "mac"
	KeyUUID     = "uuid"
	KeyOS       = "os"
	KeyHostname = "hostname"
	// KeyArch is the machine's CPU architecture (see NormalizeArch): sent
	// by GRUB's first stage ($grub_cpu) and by iPXE (${buildarch}), or
	// known from the DHCP lease (Facts.Arch, option 93).
	KeyArch = "arch"
)
