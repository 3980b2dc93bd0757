package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/templates"
)

func TestLoadFallsBackToBuiltIn(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		_, source, err := Load(dir)
		if err != nil || source != BuiltIn {
			t.Errorf("Load(%q) = %q, %v; want the built-in template", dir, source, err)
		}
	}
}

func TestLoadUserTemplate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, templates.Name)
	if err := os.WriteFile(path, []byte("{{range .Services}}backend {{.Name}}\n{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, source, err := Load(dir)
	if err != nil || source != path {
		t.Fatalf("Load = %q, %v; want %q", source, err, path)
	}
	out, err := Render(tmpl, Data{Services: []Service{{Name: "web"}, {Name: "api"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "backend web\nbackend api\n"; got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
}

func TestBrokenTemplates(t *testing.T) {
	tests := []struct{ name, text, wantErr string }{
		{"parse error", "{{range .Services}", "parse template"},
		{"unknown field", "{{.Nope}}", "render"},
		{"unknown function", "{{nope 1}}", "parse template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(tt.name, tt.text)
			if err == nil {
				_, err = Render(tmpl, Data{})
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct{ got, want string }{
		{Listener{Port: 80}.Bind(), ":80"},
		{Listener{Address: "127.0.0.1", Port: 80}.Bind(), "127.0.0.1:80"},
		{Listener{Address: "::1", Port: 80}.Bind(), "[::1]:80"},
		{Server{Address: "fd00::1", Port: 8080}.Addr(), "[fd00::1]:8080"},
		{Server{Address: "app.example", Port: 8080}.Addr(), "app.example:8080"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if got := funcs["ms"].(func(time.Duration) string)(1500 * time.Millisecond); got != "1500ms" {
		t.Errorf("ms(1.5s) = %q, want 1500ms", got)
	}
}
