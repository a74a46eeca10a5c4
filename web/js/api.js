// The server's HTTP API: JSON in, JSON out, the cookie sent along. Every
// error answer becomes an HttpError with the server's `msg`; a network
// failure is status 0.

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(method, path, body) {
  const opts = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (_) {
    throw new HttpError(0, "Cannot reach the server.");
  }
  let data = null;
  try {
    data = await res.json();
  } catch (_) {
    data = null;
  }
  if (!res.ok) {
    const msg = data && typeof data.msg === "string" ? data.msg : "HTTP " + res.status;
    throw new HttpError(res.status, msg);
  }
  return data || {};
}
