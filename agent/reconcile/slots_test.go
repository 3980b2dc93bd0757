package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"clb/agent/config"
	"clb/internal/haproxy"
	"clb/internal/model"
	"clb/internal/render"
	"clb/internal/store"
)

func slotConfig(t *testing.T, slots int) *config.Config {
	t.Helper()
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{"web": {Listeners: []config.Listener{{Port: 80}}, Slots: slots}}
	cfg.SetDefaults()
	return &cfg
}

func members(names ...string) store.Snapshot {
	var ms []model.Member
	for i, n := range names {
		ms = append(ms, model.Member{Name: n, Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8080, Weight: 100})
	}
	slices.SortFunc(ms, func(a, b model.Member) int { return cmp(a.Name, b.Name) })
	return store.Snapshot{Members: map[string][]model.Member{"web": ms}}
}

func cmp(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func holders(t *Slots) map[string]int {
	return maps.Clone(t.pools["web"].slot)
}

var never = func(string, string) bool { return false }

func TestSlotsAssign(t *testing.T) {
	cfg := slotConfig(t, 0)
	tab := NewSlots()
	if grew := tab.Assign(cfg, members("a", "b"), never); grew {
		t.Error("the first pool counts as grown")
	}
	if got, want := holders(tab), map[string]int{"a": 1, "b": 2}; !maps.Equal(got, want) {
		t.Fatalf("slots = %v, want %v", got, want)
	}
	if got := tab.pools["web"].size; got != minSlots {
		t.Errorf("pool size = %d, want %d", got, minSlots)
	}
	// a leaves; c arrives in the same round: not a's slot (freed just now), a never-used one.
	tab.Assign(cfg, members("b", "c"), never)
	if got, want := holders(tab), map[string]int{"b": 2, "c": 3}; !maps.Equal(got, want) {
		t.Fatalf("after a left and c came: %v, want %v", got, want)
	}
	// a comes back: its old slot.
	tab.Assign(cfg, members("a", "b", "c"), never)
	if got := holders(tab)["a"]; got != 1 {
		t.Errorf("a came back in slot %d, want 1", got)
	}
	// A busy slot is not taken, even by its old member.
	tab.Assign(cfg, members("b", "c"), never)
	busy := func(_, slot string) bool { return slot == "s1" }
	tab.Assign(cfg, members("a", "b", "c"), busy)
	if got := holders(tab)["a"]; got == 1 {
		t.Errorf("a took slot 1 while it drained")
	}
}

func TestSlotsReuseOrder(t *testing.T) {
	cfg := slotConfig(t, 0)
	tab := NewSlots()
	var all []string
	for i := range 12 { // poolSize(8): a first pool has room to spare
		all = append(all, fmt.Sprintf("m%02d", i))
	}
	tab.Assign(cfg, members(all[:8]...), never)
	if got := tab.pools["web"].size; got != 12 {
		t.Fatalf("first pool for 8 = %d, want 12", got)
	}
	tab.Assign(cfg, members(all...), never)     // full
	tab.Assign(cfg, members(all[2:]...), never) // m00, m01 leave (slots 1, 2)
	tab.Assign(cfg, members(all[3:]...), never) // m02 leaves later (slot 3)
	tab.Assign(cfg, members(append(all[3:], "x")...), never)
	if got := holders(tab)["x"]; got != 1 && got != 2 {
		t.Errorf("x took slot %d, want one of the longest-freed (1 or 2)", got)
	}
}

func TestSlotsGrow(t *testing.T) {
	cfg := slotConfig(t, 0)
	tab := NewSlots()
	var names []string
	for i := range minSlots {
		names = append(names, fmt.Sprintf("m%02d", i))
	}
	if tab.Assign(cfg, members(names...), never) {
		t.Error("the first pool counts as grown")
	}
	size := tab.pools["web"].size
	for len(names) < size {
		names = append(names, fmt.Sprintf("m%02d", len(names)))
	}
	if tab.Assign(cfg, members(names...), never) {
		t.Errorf("%d members in %d slots grew the pool", len(names), size)
	}
	names = append(names, "zz")
	if !tab.Assign(cfg, members(names...), never) {
		t.Fatal("one member more than slots did not grow the pool")
	}
	if got, want := tab.pools["web"].size, poolSize(len(names), 0); got != want {
		t.Errorf("grown pool = %d, want %d", got, want)
	}
	// The slots setting sizes the pool up front.
	tab = NewSlots()
	tab.Assign(slotConfig(t, 100), members(names...), never)
	if got := tab.pools["web"].size; got != 100 {
		t.Errorf("pool with slots: 100 = %d", got)
	}
}

// TestSlotsLearn: the slots rendered into haproxy.cfg are the table a restart starts from.
func TestSlotsLearn(t *testing.T) {
	cfg := slotConfig(t, 0)
	tab := NewSlots()
	tab.Assign(cfg, members("a", "b", "c"), never)
	tab.Assign(cfg, members("a", "c"), never) // b's slot free
	data := Desired(cfg, members("a", "c"), tab, render.Data{})
	tmpl, _, err := render.Load("")
	if err != nil {
		t.Fatal(err)
	}
	out, err := render.Render(tmpl, data)
	if err != nil {
		t.Fatal(err)
	}
	learnt := NewSlots()
	learnt.Learn(haproxy.ParseConfig(out), cfg)
	if got, want := holders(learnt), holders(tab); !maps.Equal(got, want) {
		t.Errorf("learnt %v, want %v", got, want)
	}
	if learnt.pools["web"].size != tab.pools["web"].size {
		t.Errorf("learnt size %d, want %d", learnt.pools["web"].size, tab.pools["web"].size)
	}
	// And the next assignment from it keeps everyone where they are.
	learnt.Assign(cfg, members("a", "c", "d"), never)
	if learnt.pools["web"].slot["a"] != tab.pools["web"].slot["a"] || learnt.pools["web"].slot["c"] != tab.pools["web"].slot["c"] {
		t.Errorf("after a restart a or c moved: %v, was %v", holders(learnt), holders(tab))
	}
}

func TestSlotIndex(t *testing.T) {
	for in, want := range map[string]int{"s1": 1, "s42": 42, "s0": 0, "s01": 0, "x1": 0, "s": 0, "s-1": 0, "m1": 0} {
		if got := slotIndex(in); got != want {
			t.Errorf("slotIndex(%q) = %d, want %d", in, got, want)
		}
	}
}
