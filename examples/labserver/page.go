package main

import (
	"fmt"
	"html/template"
	"time"
)

// The steps /machines shows as a machine's progress, in boot order, and
// the timeline stages that count as reaching each.
var steps = []struct {
	Name   string
	stages []string
}{
	{"DHCP", []string{stageDiscover, stageLease}},
	{"TFTP", []string{stageTFTP, stageHTTPBoot, stageIPXEBoot}},
	{"GRUB", []string{stageGrub, stageIPXE, stageLocalBoot}},
	{"kernel", []string{stageKernel, stageInitrd}},
	{"Ignition", []string{stageIgnition, stageInstalling}},
	{"installed", []string{stageInstalled}},
}

// stuckAfter is how long a boot may go without an event before the page
// calls the machine stuck.
const stuckAfter = 10 * time.Minute

// boot is one machine's current boot as the page shows it.
type boot struct {
	Reached []bool // per step
	Current string // the furthest step reached ("local disk" for a local boot)
	Failure string // why the boot failed or is stuck, or ""
	Done    bool   // ended well: installed, or booting its local disk
}

// progress reads the current boot from a machine's events: a boot starts
// with the first event, and again with a DHCP event after the previous
// boot ended (Ignition served, installed, local boot or a failure); later
// DHCP exchanges of the same boot (GRUB's, the installer's) do not reset it.
func progress(r machineRecord, now time.Time) boot {
	var b boot
	reset := func() { b = boot{Reached: make([]bool, len(steps))} }
	reset()
	ended := false
	for _, e := range r.Events {
		if ended && (e.Stage == stageDiscover || e.Stage == stageLease) {
			reset()
			ended = false
		}
		if e.Stage == stageFailed {
			b.Failure, ended = e.Detail, true
			continue
		}
		for i, s := range steps {
			for _, st := range s.stages {
				if e.Stage == st {
					b.Reached[i] = true
					b.Current = s.Name
					b.Failure = ""
				}
			}
		}
		switch e.Stage {
		case stageIgnition, stageInstalling, stageInstalled:
			ended = true
		case stageLocalBoot:
			ended, b.Done, b.Current = true, true, "local disk"
		case stageReinstall:
			reset()
			ended, b.Current = true, "reinstall requested"
		}
	}
	if r.Installed && b.Current != "reinstall requested" {
		b.Reached[len(steps)-1] = true
		b.Done = true
		if b.Current != "local disk" {
			b.Current = "installed"
		}
	}
	if b.Current == "" {
		b.Current = "seen"
	}
	if !b.Done && b.Failure == "" && len(r.Events) > 0 && !ended {
		if idle := now.Sub(r.Last); idle >= stuckAfter {
			b.Failure = fmt.Sprintf("stuck for %d minutes after %s", int(idle.Minutes()), b.Current)
		}
	}
	return b
}

// row is one machine on the page.
type row struct {
	machineRecord
	P   boot
	Ago string
}

type pageData struct {
	Rows []row
	Now  time.Time
}

func rows(ms []machineRecord, now time.Time) []row {
	out := make([]row, 0, len(ms))
	for _, m := range ms {
		out = append(out, row{machineRecord: m, P: progress(m, now), Ago: ago(now.Sub(m.Last))})
	}
	return out
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	default:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
}

// machinesPage is /machines for a person reinstalling a rack: one row per
// machine with its progress, the time since its last event and a failure
// in red; the timeline on demand; a reinstall button (the server applies
// the admin rules); sortable by any column; it refreshes its rows every
// 3 s without losing open timelines or the sort order.
var machinesPage = template.Must(template.New("machines").Funcs(template.FuncMap{
	"hhmmss": func(t time.Time) string { return t.Format("15:04:05.000") },
	"steps":  func() any { return steps },
	"unix":   func(t time.Time) int64 { return t.UnixMilli() },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>metalboot: machines</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{padding:.3em .6em;text-align:left;border-bottom:1px solid #ddd;font-size:90%;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f6f6f6} th[aria-sort]::after{content:" ↕";color:#999}
code{background:#f4f4f4;padding:0 .3em}
.steps{display:flex;gap:2px} .step{padding:0 .4em;border-radius:3px;background:#eee;color:#888;font-size:85%}
.step.done{background:#2a7;color:#fff} .failure{color:#c00;font-weight:600} .ok{color:#070}
details table{margin:.3em 0} details td{font-size:85%}
#msg{min-height:1.2em;color:#555}
</style></head><body>
<h1>Machines</h1>
<p id="summary">{{len .Rows}} machine(s). Rows refresh every 3 s; JSON at <code>/machines?format=json</code>.</p>
<p id="msg"></p>
<table id="machines">
<thead><tr><th data-key="name">name</th><th data-key="mac">MAC</th><th data-key="ip">address</th><th data-key="stage">progress</th><th data-key="last">last event</th><th data-key="status">status</th><th>timeline</th><th></th></tr></thead>
<tbody>
{{- range .Rows}}{{$r := .}}
<tr data-mac="{{.MAC}}" data-name="{{.Hostname}}" data-ip="{{.IP}}" data-stage="{{.P.Current}}" data-last="{{unix .Last}}" data-status="{{.P.Failure}}">
<td class="name">{{.Hostname}}</td><td><code>{{.MAC}}</code></td><td>{{.IP}}</td>
<td><div class="steps" title="{{.P.Current}}">{{range $i, $s := steps}}<span class="step{{if index $r.P.Reached $i}} done{{end}}">{{$s.Name}}</span>{{end}}</div></td>
<td class="ago">{{.Ago}}</td>
<td class="status">{{if .P.Failure}}<span class="failure">{{.P.Failure}}</span>{{else if .P.Done}}<span class="ok">{{.P.Current}}</span>{{else}}{{.P.Current}}{{end}}</td>
<td><details data-mac="{{.MAC}}"><summary>{{len .Events}} events</summary><table>
{{- range .Events}}<tr><td>{{hhmmss .Time}}</td><td>{{.Stage}}</td><td>{{.Detail}}</td><td>{{.IP}}</td></tr>{{end}}
</table></details></td>
<td><button class="reinstall" data-mac="{{.MAC}}">reinstall</button></td>
</tr>
{{- end}}
</tbody></table>
<script>
(function () {
  var sortKey = null, sortDir = 1;
  function apply() {
    if (!sortKey) return;
    var tb = document.querySelector('#machines tbody');
    var rows = Array.prototype.slice.call(tb.rows);
    rows.sort(function (a, b) {
      var x = a.dataset[sortKey] || '', y = b.dataset[sortKey] || '';
      if (sortKey === 'last') { x = +x; y = +y; }
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    rows.forEach(function (r) { tb.appendChild(r); });
  }
  document.querySelectorAll('#machines th[data-key]').forEach(function (th) {
    th.setAttribute('aria-sort', 'none');
    th.addEventListener('click', function () {
      var k = th.dataset.key;
      sortDir = (sortKey === k) ? -sortDir : 1;
      sortKey = k;
      apply();
    });
  });
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest('button.reinstall');
    if (!b) return;
    var mac = b.dataset.mac, msg = document.getElementById('msg');
    fetch('/machines/' + mac + '/reinstall', {method: 'POST', headers: {'X-Metalboot-Action': 'reinstall'}})
      .then(function (r) { return r.text().then(function (t) { msg.textContent = r.status + ': ' + t; }); })
      .catch(function (e) { msg.textContent = 'reinstall ' + mac + ': ' + e; });
  });
  function refresh() {
    fetch('/machines', {headers: {Accept: 'text/html'}, cache: 'no-store'}).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var open = {};
      document.querySelectorAll('#machines details[open]').forEach(function (d) { open[d.dataset.mac] = true; });
      var tb = document.querySelector('#machines tbody');
      tb.replaceWith(doc.querySelector('#machines tbody'));
      document.querySelectorAll('#machines details').forEach(function (d) { if (open[d.dataset.mac]) d.open = true; });
      document.getElementById('summary').replaceWith(doc.getElementById('summary'));
      apply();
    }).catch(function () {});
  }
  setInterval(refresh, 3000);
})();
</script>
</body></html>
`))
