package checkpoint

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// keyCodec turns keys into their JSON form and back. Keys of the basic kinds
// (strings, integers, floats, bools) take fast paths that neither allocate
// nor go through reflection, because Open decodes one key per line of a file
// that may hold tens of millions of lines. Every other key type goes through
// encoding/json.
//
// Decoding accepts a key written as a JSON string whatever the kind, because
// the Python library writes str(key) for every key.
type keyCodec[K comparable] struct {
	encode func(dst []byte, k K) ([]byte, error)
	decode func(raw []byte) (K, error)
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

func newKeyCodec[K comparable]() (keyCodec[K], error) {
	t := reflect.TypeFor[K]()
	if err := checkKeyType(t); err != nil {
		return keyCodec[K]{}, fmt.Errorf("checkpoint: key type %v cannot be used: %w", t, err)
	}
	custom := t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)
	if custom {
		return genericCodec[K](), nil
	}
	switch t.Kind() {
	case reflect.String:
		return keyCodec[K]{encode: encodeString[K], decode: decodeString[K]}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := int(t.Size()) * 8
		return keyCodec[K]{encode: encodeInt[K](bits), decode: decodeInt[K](bits)}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := int(t.Size()) * 8
		return keyCodec[K]{encode: encodeUint[K](bits), decode: decodeUint[K](bits)}, nil
	case reflect.Float32, reflect.Float64:
		bits := int(t.Size()) * 8
		return keyCodec[K]{encode: encodeFloat[K](bits), decode: decodeFloat[K](bits)}, nil
	case reflect.Bool:
		return keyCodec[K]{encode: encodeBool[K], decode: decodeBool[K]}, nil
	}
	return genericCodec[K](), nil
}

// checkKeyType rejects key types whose values cannot come back from JSON
// equal to what was written: a key that does not round-trip would never be
// seen as completed, and its item would be redone on every run.
func checkKeyType(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Array:
		return checkKeyType(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				return fmt.Errorf("field %s is unexported and would not survive JSON", f.Name)
			}
			if f.Tag.Get("json") == "-" {
				return fmt.Errorf("field %s is excluded from JSON", f.Name)
			}
			if err := checkKeyType(f.Type); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		return nil
	}
	return fmt.Errorf("a %s cannot round-trip through JSON", t.Kind())
}

var errKeyUTF8 = errors.New("key is not valid UTF-8, so it would not round-trip through JSON")

func encodeString[K comparable](dst []byte, k K) ([]byte, error) {
	s := *(*string)(unsafe.Pointer(&k))
	if !utf8.ValidString(s) {
		return dst, errKeyUTF8
	}
	return appendJSONString(dst, s), nil
}

func decodeString[K comparable](raw []byte) (K, error) {
	var k K
	var s string
	switch {
	case len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0:
		s = string(raw[1 : len(raw)-1])
	case len(raw) > 0 && raw[0] == '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return k, err
		}
	case isJSONNumber(raw):
		// A file written with numeric keys, read with string keys.
		s = string(raw)
	default:
		return k, fmt.Errorf("key %.40q is not a string", raw)
	}
	*(*string)(unsafe.Pointer(&k)) = s
	return k, nil
}

// unquoteScalar strips the quotes from a key the Python library wrote as
// str(key); such keys never hold escapes.
func unquoteScalar(raw []byte) []byte {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		return raw[1 : len(raw)-1]
	}
	return raw
}

func encodeInt[K comparable](bits int) func([]byte, K) ([]byte, error) {
	return func(dst []byte, k K) ([]byte, error) {
		p := unsafe.Pointer(&k)
		var v int64
		switch bits {
		case 8:
			v = int64(*(*int8)(p))
		case 16:
			v = int64(*(*int16)(p))
		case 32:
			v = int64(*(*int32)(p))
		default:
			v = *(*int64)(p)
		}
		return strconv.AppendInt(dst, v, 10), nil
	}
}

func decodeInt[K comparable](bits int) func([]byte) (K, error) {
	return func(raw []byte) (K, error) {
		var k K
		v, err := strconv.ParseInt(string(unquoteScalar(raw)), 10, bits)
		if err != nil {
			return k, fmt.Errorf("key %.40q is not an integer", raw)
		}
		p := unsafe.Pointer(&k)
		switch bits {
		case 8:
			*(*int8)(p) = int8(v)
		case 16:
			*(*int16)(p) = int16(v)
		case 32:
			*(*int32)(p) = int32(v)
		default:
			*(*int64)(p) = v
		}
		return k, nil
	}
}

func encodeUint[K comparable](bits int) func([]byte, K) ([]byte, error) {
	return func(dst []byte, k K) ([]byte, error) {
		p := unsafe.Pointer(&k)
		var v uint64
		switch bits {
		case 8:
			v = uint64(*(*uint8)(p))
		case 16:
			v = uint64(*(*uint16)(p))
		case 32:
			v = uint64(*(*uint32)(p))
		default:
			v = *(*uint64)(p)
		}
		return strconv.AppendUint(dst, v, 10), nil
	}
}

func decodeUint[K comparable](bits int) func([]byte) (K, error) {
	return func(raw []byte) (K, error) {
		var k K
		v, err := strconv.ParseUint(string(unquoteScalar(raw)), 10, bits)
		if err != nil {
			return k, fmt.Errorf("key %.40q is not an unsigned integer", raw)
		}
		p := unsafe.Pointer(&k)
		switch bits {
		case 8:
			*(*uint8)(p) = uint8(v)
		case 16:
			*(*uint16)(p) = uint16(v)
		case 32:
			*(*uint32)(p) = uint32(v)
		default:
			*(*uint64)(p) = v
		}
		return k, nil
	}
}

var errKeyNaN = errors.New("key is NaN or infinite, which JSON cannot hold")

func encodeFloat[K comparable](bits int) func([]byte, K) ([]byte, error) {
	return func(dst []byte, k K) ([]byte, error) {
		p := unsafe.Pointer(&k)
		var v float64
		if bits == 32 {
			v = float64(*(*float32)(p))
		} else {
			v = *(*float64)(p)
		}
		if v != v || v > maxFloat(bits) || v < -maxFloat(bits) {
			return dst, errKeyNaN
		}
		return strconv.AppendFloat(dst, v, 'g', -1, bits), nil
	}
}

func maxFloat(bits int) float64 {
	if bits == 32 {
		return 3.40282346638528859811704183484516925440e+38
	}
	return 1.79769313486231570814527423731704356798070e+308
}

func decodeFloat[K comparable](bits int) func([]byte) (K, error) {
	return func(raw []byte) (K, error) {
		var k K
		v, err := strconv.ParseFloat(string(unquoteScalar(raw)), bits)
		if err != nil {
			return k, fmt.Errorf("key %.40q is not a number", raw)
		}
		p := unsafe.Pointer(&k)
		if bits == 32 {
			*(*float32)(p) = float32(v)
		} else {
			*(*float64)(p) = v
		}
		return k, nil
	}
}

func encodeBool[K comparable](dst []byte, k K) ([]byte, error) {
	return strconv.AppendBool(dst, *(*bool)(unsafe.Pointer(&k))), nil
}

func decodeBool[K comparable](raw []byte) (K, error) {
	var k K
	var v bool
	// Python writes str(True) as "True".
	switch string(unquoteScalar(raw)) {
	case "true", "True":
		v = true
	case "false", "False":
	default:
		return k, fmt.Errorf("key %.40q is not a bool", raw)
	}
	*(*bool)(unsafe.Pointer(&k)) = v
	return k, nil
}

// genericCodec serves composite keys and keys with their own JSON methods.
// Saving checks that the key comes back equal, so a key that would not be
// recognised on resume is refused up front rather than redone forever.
func genericCodec[K comparable]() keyCodec[K] {
	decode := func(raw []byte) (K, error) {
		var k K
		err := json.Unmarshal(raw, &k)
		if err != nil && len(raw) > 0 && raw[0] == '"' {
			// The Python library wrote str(key); try what the string holds.
			var s string
			if json.Unmarshal(raw, &s) == nil && json.Unmarshal([]byte(s), &k) == nil {
				return k, nil
			}
		}
		return k, err
	}
	encode := func(dst []byte, k K) ([]byte, error) {
		b, err := json.Marshal(k)
		if err != nil {
			return dst, err
		}
		back, err := decode(b)
		if err != nil || back != k {
			return dst, fmt.Errorf("key %s does not round-trip through JSON", b)
		}
		return append(dst, b...), nil
	}
	return keyCodec[K]{encode: encode, decode: decode}
}

func isJSONNumber(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			return false
		}
	}
	return true
}
