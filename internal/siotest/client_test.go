package siotest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSplitArray(t *testing.T) {
	for _, in := range []string{
		`[]`,
		`["m"]`,
		`["m",1,null,true]`,
		` [ "a,b" , {"x":[1,2],"y":"]"} , [[],{}] , "\"quoted\\\\" ] `,
		`["m",{"nested":{"deep":["a","b,c"]}},-1.5e3]`,
	} {
		var want []json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(in), &want), in)
		got, err := splitArray([]byte(in))
		require.NoError(t, err, in)
		require.Len(t, got, len(want), in)
		for i := range want {
			require.JSONEq(t, string(want[i]), string(got[i]), in)
		}
	}
	for _, bad := range []string{``, `{}`, `["open`, `[[1]`, `"x"`} {
		_, err := splitArray([]byte(bad))
		require.Error(t, err, bad)
	}
}
