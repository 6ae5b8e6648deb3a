// Package ignition generates, renders, validates and serves Ignition
// configs: stage 6 of the metalboot boot flow.
//
// Three layers, each usable alone:
//
//   - Generation in Go: an [Installer] (Flatcar's flatcar-install or Fedora
//     CoreOS's coreos-installer) and an [Installed] system config become
//     Ignition configs built from github.com/coreos/ignition/v2 types and
//     marshalled at a chosen spec version ([DefaultVersion], 3.4.0, unless
//     the caller picks another).
//   - Templates as matchbox users write them: files under ignition/ in a
//     data directory that are Ignition JSON or Butane YAML, rendered with
//     text/template against the matched machine ([Data]) and translated to
//     Ignition by Butane. [Check] compiles and test-renders every template
//     when an inventory loads, so a broken template is found before a
//     machine boots.
//   - [Handler], the /ignition HTTP endpoint.
//
// matchbox's two other provisioning endpoints live here too, because they
// render from the same template data: [GenericHandler] (/generic, a
// profile's generic_id template; its output format is the author's, so
// values from the network are validated strictly instead of encoded, see
// [RenderGeneric]) and [MetadataHandler] (/metadata, the group's metadata
// as an env file, [AppendEnv] quoting what a shell would misread).
// [MatchboxData] is matchbox's variable set; [Data], which Ignition and
// generic templates get, is its superset.
//
// Values from the network (the machine's MAC, UUID, hostname, IP address,
// request labels and query) never change a config's structure: templates
// run with placeholders, and each value is put into the translated
// Ignition JSON inside a string (a file's data URL, re-encoded), JSON- and
// URL-encoded there ([Template.Render]). A quote, newline or YAML in a
// DHCP hostname cannot add a file, a unit or a user.
//
// Every config leaves this package validated by Ignition's own parser for
// the config's spec version ([Validate]), and is served in the version it
// was written or translated for: Butane's flatcar 1.0.0 gives 3.3.0, and
// that is what the machine receives, never the 3.6.0-experimental form
// that config.Parse translates everything up to.
package ignition
