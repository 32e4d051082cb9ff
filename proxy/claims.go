package proxy

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// maxClaimValue bounds one flattened claim.
const maxClaimValue = 16 << 10

// flattenClaim turns a JSON claim into a header value. The rules, as the
// README documents them:
//
//   - a string is used as it is;
//   - a number or boolean is written as JSON writes it;
//   - a list of strings, numbers or booleans is joined with ",";
//   - null, an object, a list holding a list or object, or an empty list
//     gives no value: the header is not set;
//   - a value holding a control character (CR, LF, NUL, tab, DEL...) or
//     invalid UTF-8, or longer than 16 KiB, gives no value, so a claim can
//     never split or add a header.
//
// ok is false when the claim was present but refused by these rules.
func flattenClaim(raw json.RawMessage) (value string, ok bool) {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", false
	}
	switch t := v.(type) {
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := scalar(e)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		if len(parts) == 0 {
			return "", true
		}
		value = strings.Join(parts, ",")
	default:
		s, ok := scalar(t)
		if !ok {
			return "", false
		}
		value = s
	}
	if !safeHeaderValue(value) {
		return "", false
	}
	return value, true
}

func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		if t {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

func safeHeaderValue(s string) bool {
	if len(s) > maxClaimValue || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// stringClaims are the standard claims OpenID Connect Core 1.0 section 5.1
// makes JSON strings; booleanClaims are its booleans.
var (
	stringClaims = map[string]bool{
		"sub": true, "name": true, "given_name": true, "family_name": true, "middle_name": true, "nickname": true,
		"preferred_username": true, "profile": true, "picture": true, "website": true, "email": true, "gender": true,
		"birthdate": true, "zoneinfo": true, "locale": true, "phone_number": true,
	}
	booleanClaims = map[string]bool{"email_verified": true, "phone_number_verified": true}
)

// claimError is a claim the identity needs that the provider sent in a
// form the proxy cannot use. It names the claim and why, never the value.
type claimError struct{ claim, why string }

func (e *claimError) Error() string { return "claim " + e.claim + ": " + e.why }

// claimProblem says why a claim that is present cannot be used, or "":
// a standard claim of another JSON type than section 5.1 gives it; groups
// that are neither a list of strings nor one string; any value holding a
// control character or invalid UTF-8, or over 16 KiB; and, for every
// other claim, what flattenClaim refuses.
func claimProblem(name string, raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "not JSON"
	}
	if v == nil {
		return "" // null: as if absent
	}
	switch {
	case stringClaims[name]:
		s, ok := v.(string)
		if !ok {
			return "not a string, as OpenID Connect Core 5.1 requires"
		}
		return textProblem(s)
	case booleanClaims[name]:
		if _, ok := v.(bool); !ok {
			return "not a boolean, as OpenID Connect Core 5.1 requires"
		}
		return ""
	case name == "groups":
		switch t := v.(type) {
		case string:
			return textProblem(t)
		case []any:
			for _, e := range t {
				s, ok := e.(string)
				if !ok {
					return "a list holding something other than strings"
				}
				if p := textProblem(s); p != "" {
					return p
				}
			}
			return ""
		}
		return "neither a list of strings nor a string"
	}
	if _, ok := flattenClaim(raw); !ok {
		if s, isString := v.(string); isString {
			return textProblem(s)
		}
		return "not a string, number, boolean or list of them, or holds control characters"
	}
	return ""
}

func textProblem(s string) string {
	switch {
	case len(s) > maxClaimValue:
		return "longer than 16 KiB"
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case !safeHeaderValue(s):
		return "holds a control character"
	}
	return ""
}
