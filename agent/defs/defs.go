// Package defs keeps what the API defines, beside the membership: services defined with
// PUT /v1/services/{service}, gateways and their domains (PUT /v1/gateways/...) and zones
// taken out of rotation. They live in
// STATE_DIR/definitions.yaml, or in etcd when the membership does (they belong to the fleet,
// not to one node). The running config is made from them and the config file by
// config.Merge.
package defs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"clb/agent/config"
	"clb/internal/atomicfile"
	"clb/internal/gateway"
)

// FileName is the local definitions file in the state dir.
const FileName = "definitions.yaml"

// Remote is a shared store that holds the definitions as one document (etcdstore.Store).
type Remote interface {
	Definitions() []byte
	UpdateDefinitions(fn func(old []byte) ([]byte, error)) error
}

// Defs is the durable part of the config that the API changes. Services in the config file
// win over services of the same name defined through the API (the API answers 409 for them).
type Defs struct {
	path string

	mu   sync.Mutex
	file File
	// remote, when set, holds the definitions instead of path; remoteRaw is the document
	// file was read from.
	remote    Remote
	remoteRaw []byte
}

// File is the definitions document.
type File struct {
	Services map[string]config.Service `yaml:"services,omitempty"`
	// DisabledZones by service.
	DisabledZones map[string][]string `yaml:"disabled_zones,omitempty"`
	// Instances is the instance registry: what a member machine announced of itself
	// (clb_register --instance-id), by instance id. The AWS API registers instances by id.
	Instances map[string]Instance `yaml:"instances,omitempty"`
	// LoadBalancers are the ELB attributes of services created through the AWS API, by
	// service name: what clb's service model has no place for.
	LoadBalancers map[string]LoadBalancer `yaml:"load_balancers,omitempty"`
	// Gateways are the gateways defined through the API (PUT /v1/gateways/{gateway}), with
	// their domains; config-file gateways of the same name win.
	Gateways map[string]gateway.Gateway `yaml:"gateways,omitempty"`
	// LaunchConfigurations and Groups are the Auto Scaling launch configurations and groups
	// defined through the AWS API (the config file's win over them; values are replaced
	// whole, never changed in place).
	LaunchConfigurations map[string]config.LaunchConfiguration `yaml:"launch_configurations,omitempty"`
	Groups               map[string]config.Group               `yaml:"groups,omitempty"`
}

// Instance is a member machine as it announced itself.
type Instance struct {
	Address string `yaml:"address" json:"address"`
	Zone    string `yaml:"zone,omitempty" json:"zone,omitempty"`
}

// LoadBalancer is what the AWS API keeps of a load balancer beside its service.
type LoadBalancer struct {
	// Name is the name as the client spelled it (ELB names have upper case; services not).
	Name string `yaml:"name"`
	// Zones are the availability zones the load balancer routes to (Enable/Disable change
	// them), in the order they were given.
	Zones   []string  `yaml:"zones,omitempty,flow"`
	Created time.Time `yaml:"created"`
	Scheme  string    `yaml:"scheme,omitempty"`
	// Tags are the load balancer's tags (AddTags, RemoveTags).
	Tags map[string]string `yaml:"tags,omitempty"`
	// Certificates are the SSLCertificateId of each HTTPS listener, by port, as given.
	Certificates map[int]string `yaml:"certificates,omitempty"`
	// Policies are the load balancer's policies by name (LB cookie stickiness), and
	// ListenerPolicies the policy names attached to each listener, by port.
	Policies         map[string]Policy `yaml:"policies,omitempty"`
	ListenerPolicies map[int][]string  `yaml:"listener_policies,omitempty"`
	// BackendPolicies are the policy names attached to each instance port (ProxyProtocol).
	BackendPolicies map[int][]string `yaml:"backend_policies,omitempty"`
}

// Policy is an ELB policy: its type and attributes.
type Policy struct {
	Type string `yaml:"type"`
	// CookieExpirationPeriod is the LB cookie's lifetime in seconds; 0 is a session cookie.
	CookieExpirationPeriod int `yaml:"cookie_expiration_period,omitempty"`
	// CookieName is the application's cookie (app-cookie stickiness).
	CookieName string `yaml:"cookie_name,omitempty"`
	// ProxyProtocol is the ProxyProtocol attribute of a ProxyProtocolPolicyType policy.
	ProxyProtocol bool `yaml:"proxy_protocol,omitempty"`
}

// Open reads the local definitions of a state dir (none yet is fine).
func Open(dir string) (*Defs, error) {
	d := &Defs{path: filepath.Join(dir, FileName)}
	data, err := os.ReadFile(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.path, err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.path, err)
	}
	d.file = f
	return d, nil
}

// OpenRemote uses the definitions of a shared store; Refresh reads them.
func OpenRemote(r Remote) *Defs { return &Defs{remote: r} }

// Snapshot returns a deep enough copy: callers may not change the services' slices.
func (d *Defs) Snapshot() File {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.file.clone()
}

func (f File) clone() File {
	out := File{Services: maps.Clone(f.Services), DisabledZones: map[string][]string{},
		Instances: maps.Clone(f.Instances), LoadBalancers: map[string]LoadBalancer{},
		LaunchConfigurations: maps.Clone(f.LaunchConfigurations), Groups: maps.Clone(f.Groups)}
	if out.LaunchConfigurations == nil {
		out.LaunchConfigurations = map[string]config.LaunchConfiguration{}
	}
	if out.Groups == nil {
		out.Groups = map[string]config.Group{}
	}
	if out.Services == nil {
		out.Services = map[string]config.Service{}
	}
	if out.Instances == nil {
		out.Instances = map[string]Instance{}
	}
	for k, v := range f.LoadBalancers {
		v.Zones, v.Tags, v.Certificates = slices.Clone(v.Zones), maps.Clone(v.Tags), maps.Clone(v.Certificates)
		v.Policies = maps.Clone(v.Policies)
		v.ListenerPolicies, v.BackendPolicies = ClonePorts(v.ListenerPolicies), ClonePorts(v.BackendPolicies)
		out.LoadBalancers[k] = v
	}
	for k, v := range f.DisabledZones {
		out.DisabledZones[k] = slices.Clone(v)
	}
	out.Gateways = make(map[string]gateway.Gateway, len(f.Gateways))
	for k, g := range f.Gateways {
		// Domains are changed one by one (PUT .../domains/{host}): each copy has its own map.
		g.Domains = maps.Clone(g.Domains)
		g.Headers = slices.Clone(g.Headers)
		out.Gateways[k] = g
	}
	return out
}

// ClonePorts copies a map of names by port (nil stays nil).
func ClonePorts(m map[int][]string) map[int][]string {
	if m == nil {
		return nil
	}
	out := make(map[int][]string, len(m))
	for port, names := range m {
		out[port] = slices.Clone(names)
	}
	return out
}

// apply is one read-modify-write: fn changes a copy of cur, which is returned encoded.
func apply(cur File, fn func(f *File) error) (File, []byte, error) {
	next := cur.clone()
	if err := fn(&next); err != nil {
		return File{}, nil, err
	}
	data, err := yaml.Marshal(next)
	if err != nil {
		return File{}, nil, fmt.Errorf("encode definitions: %w", err)
	}
	return next, data, nil
}

// Update changes the definitions with fn and saves them; nothing changes if fn or the save
// fails. In etcd, fn is applied to etcd's current document in a transaction guarded by its
// revision: two nodes defining services at once lose nothing.
func (d *Defs) Update(fn func(f *File) error) error {
	if d.remote != nil {
		return d.updateRemote(fn)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next, data, err := apply(d.file, fn)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(d.path, data, 0o640); err != nil {
		return fmt.Errorf("save definitions: %w", err)
	}
	d.file = next
	return nil
}

// Refresh takes the definitions from the shared store's copy; it reports whether they changed.
func (d *Defs) Refresh() (bool, error) {
	if d.remote == nil {
		return false, nil
	}
	raw := d.remote.Definitions()
	d.mu.Lock()
	same := d.remoteRaw != nil && bytes.Equal(raw, d.remoteRaw)
	d.mu.Unlock()
	if same {
		return false, nil
	}
	f, err := Parse(raw)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	d.file, d.remoteRaw = f, append([]byte{}, raw...)
	d.mu.Unlock()
	return true, nil
}

// Parse decodes a definitions document (empty is none); unknown keys are an error.
func Parse(raw []byte) (File, error) {
	var f File
	if len(bytes.TrimSpace(raw)) == 0 {
		return f, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("decode definitions: %w", err)
	}
	return f, nil
}

func (d *Defs) updateRemote(fn func(f *File) error) error {
	var result File
	var raw []byte
	err := d.remote.UpdateDefinitions(func(old []byte) ([]byte, error) {
		cur, err := Parse(old)
		if err != nil {
			return nil, err
		}
		next, out, err := apply(cur, fn)
		if err != nil {
			return nil, err
		}
		result, raw = next, out
		return out, nil
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.file, d.remoteRaw = result, raw
	d.mu.Unlock()
	return nil
}

// Errors of definition changes; the API answers them 409, 404 and 409.
var (
	// ErrFileService: the service is defined in the config file, which wins; change it there.
	ErrFileService = errors.New("service is defined in the config file")
	// ErrNotDefined: no such service was defined through the API.
	ErrNotDefined = errors.New("service was not defined through the API")
	// ErrFileGateway: the gateway is defined in the config file, which wins.
	ErrFileGateway = errors.New("gateway is defined in the config file")
	// ErrNoGateway: no such gateway, or no such domain in it.
	ErrNoGateway = errors.New("no such gateway or domain")
	// ErrInvalid: the change would make the running config invalid (a listener taken, ...);
	// nothing was changed.
	ErrInvalid = errors.New("definitions change refused")
)
