package checkpoint

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
)

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkStateType reports why values of t would not come back the same after
// a JSON round trip: a flow hands every step a state decoded afresh from the
// saved JSON, so a field JSON drops would be silently lost between steps.
//
// Allowed: the basic kinds, strings, slices, arrays, maps with string,
// integer or text-marshaling keys, pointers to allowed types, structs whose
// fields are all exported and encoded, the empty interface (its values come
// back as JSON's own types on every run alike), and types that marshal and
// unmarshal themselves. Refused: channels, funcs, complex numbers, unsafe
// pointers, non-empty interfaces, unexported or `json:"-"` fields.
func checkStateType(t reflect.Type) error {
	return checkState(t, map[reflect.Type]bool{})
}

func checkState(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil // a recursive type: checked on the way in
	}
	seen[t] = true
	if custom(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return nil
		}
		return fmt.Errorf("interface %v cannot be decoded from JSON", t)
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkState(t.Elem(), seen)
	case reflect.Map:
		k := t.Key()
		switch {
		case k.Kind() == reflect.String, custom(k):
		case k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr:
		default:
			return fmt.Errorf("map key type %v is not a string, an integer or a text marshaler", k)
		}
		return checkState(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("json") == "-" {
				return fmt.Errorf("field %s is excluded from JSON and would be lost between steps", f.Name)
			}
			if !f.IsExported() {
				// An embedded unexported struct lends JSON its exported
				// fields; anything else unexported is dropped.
				if f.Anonymous && f.Type.Kind() == reflect.Struct {
					if err := checkState(f.Type, seen); err != nil {
						return fmt.Errorf("field %s: %w", f.Name, err)
					}
					continue
				}
				return fmt.Errorf("field %s is unexported and would be lost between steps", f.Name)
			}
			if err := checkState(f.Type, seen); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		return nil
	}
	return fmt.Errorf("a %s cannot round-trip through JSON", t.Kind())
}

// custom reports whether t encodes and decodes itself (time.Time, big.Int,
// net.IP...): its round trip is its own business.
func custom(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	marshals := t.Implements(jsonMarshalerType) || p.Implements(jsonMarshalerType) ||
		t.Implements(textMarshalerType) || p.Implements(textMarshalerType)
	unmarshals := p.Implements(jsonUnmarshalerType) || p.Implements(textUnmarshalerType)
	return marshals && unmarshals
}
