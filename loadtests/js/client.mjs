// What the load scenarios share: their command line and a GraphQL client over fetch.

export const args = process.argv.slice(2);
export const url = args[0];

/** The number after `--name` on the command line, or `fallback`. */
export const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};

/** POSTs a GraphQL request; its data, or a thrown error when it has errors. */
export async function gql(query, variables = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (res.status !== 200 || body.errors) throw new Error(JSON.stringify(body.errors ?? res.status));
  return body.data;
}
