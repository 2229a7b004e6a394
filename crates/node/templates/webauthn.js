  // The pages' WebAuthn helpers (included in their nonce'd scripts):
  // base64url to bytes and back, and an assertion as the JSON the node reads.
  const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const requestOptions = (json) => {
    const pk = JSON.parse(json).publicKey;
    pk.challenge = dec(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
    return pk;
  };
  const assertionJson = (a) => JSON.stringify({
    id: a.id, rawId: enc(a.rawId), type: a.type, extensions: {},
    response: {
      authenticatorData: enc(a.response.authenticatorData),
      clientDataJSON: enc(a.response.clientDataJSON),
      signature: enc(a.response.signature),
      userHandle: a.response.userHandle ? enc(a.response.userHandle) : null,
    },
  });
  // A failure shown in `el`, announced (the role only once there is
  // something to say: an empty alert would be found on the page first).
  const showError = (el, e) => {
    el.textContent = String(e.message || e);
    el.setAttribute("role", "alert");
    el.hidden = false;
  };
