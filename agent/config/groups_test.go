package config

import (
	"strings"
	"testing"
)

const groupsBase = `
state_dir: /tmp/x
managed: true
services:
  web:
    listeners: [{port: 80}]
launchers:
  default: {launch: "/bin/launch --zone x", terminate: /bin/terminate}
launch_configurations:
  lc: {image_id: img}
`

func TestGroupsValidate(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"ok", "groups:\n  g: {launch_configuration: lc, min_size: 1, max_size: 3, services: [web], zones: [a, b]}\n", ""},
		{"min above max", "groups:\n  g: {launch_configuration: lc, min_size: 4, max_size: 3}\n", "min_size 4, max_size 3"},
		{"desired outside", "groups:\n  g: {launch_configuration: lc, min_size: 1, max_size: 3, desired_capacity: 5}\n", "desired_capacity 5 is outside"},
		{"unknown lc", "groups:\n  g: {launch_configuration: nope, max_size: 1}\n", `launch_configuration "nope" is not defined`},
		{"unknown service", "groups:\n  g: {launch_configuration: lc, max_size: 1, services: [api]}\n", `service "api" is not defined`},
		{"health check type", "groups:\n  g: {launch_configuration: lc, max_size: 1, health_check_type: HTTP}\n", "want EC2 or ELB"},
		{"bad zone", "groups:\n  g: {launch_configuration: lc, max_size: 1, zones: [\"a b\"]}\n", "zone"},
		{"trigger metric", "groups:\n  g:\n    launch_configuration: lc\n    max_size: 2\n    triggers: [{name: t, metric: Disk, upper_threshold: 1, upper_breach_scale_increment: \"1\"}]\n", `metric "Disk"`},
		{"trigger increment", "groups:\n  g:\n    launch_configuration: lc\n    max_size: 2\n    triggers: [{name: t, metric: CPUUtilization, upper_threshold: 80, upper_breach_scale_increment: \"ten\"}]\n", `scale increment "ten"`},
		{"trigger thresholds", "groups:\n  g:\n    launch_configuration: lc\n    max_size: 2\n    triggers: [{name: t, metric: CPUUtilization, lower_threshold: 80, upper_threshold: 40, lower_breach_scale_increment: \"-1\", upper_breach_scale_increment: \"1\"}]\n", "lower_threshold must be below"},
		{"trigger breach", "groups:\n  g:\n    launch_configuration: lc\n    max_size: 2\n    triggers: [{name: t, metric: Latency, period: 60s, breach_duration: 30s, upper_threshold: 1, upper_breach_scale_increment: \"1\"}]\n", "period <= breach_duration"},
		{"launcher without command", "launchers:\n  other: {launch: \"\", terminate: x}\n", "launcher other: launch command"},
		{"lc unknown launcher", "launch_configurations:\n  lc2: {launcher: nope}\n", `no launcher "nope"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Defaults()
			y := groupsBase
			// Later keys of the same name replace the base's: merge by appending entries.
			y = strings.Replace(y, "launchers:\n", "launchers:\n"+indentEntries(c.yaml, "launchers:"), 1)
			y = strings.Replace(y, "launch_configurations:\n", "launch_configurations:\n"+indentEntries(c.yaml, "launch_configurations:"), 1)
			if g := indentEntries(c.yaml, "groups:"); g != "" {
				y += "groups:\n" + g
			}
			if err := Decode(&cfg, []byte(y), "test"); err != nil {
				t.Fatal(err)
			}
			cfg.SetDefaults()
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// indentEntries returns the lines under key in y (without the key line).
func indentEntries(y, key string) string {
	_, rest, ok := strings.Cut(y, key+"\n")
	if !ok {
		return ""
	}
	var out []string
	for _, l := range strings.Split(rest, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") {
			break
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestParseIncrement(t *testing.T) {
	for in, want := range map[string][2]int{"10": {10, 0}, "-5": {-5, 0}, "50%": {50, 1}, " -25% ": {-25, 1}} {
		n, pct, err := ParseIncrement(in)
		if err != nil || n != want[0] || pct != (want[1] == 1) {
			t.Errorf("ParseIncrement(%q) = %d %v %v, want %v", in, n, pct, err, want)
		}
	}
	if _, _, err := ParseIncrement("5 %x"); err == nil {
		t.Errorf("ParseIncrement(%q) accepted", "5 %x")
	}
}
