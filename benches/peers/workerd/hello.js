// The hello example as a Cloudflare Worker: the same JSON, for workerd.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/hello") {
      return Response.json({ message: "Hello from Verge!", path: url.pathname });
    }
    return new Response("Not Found", { status: 404 });
  },
};
