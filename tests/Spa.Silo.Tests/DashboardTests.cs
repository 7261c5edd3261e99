using System.Net;

namespace Spa.Silo.Tests;

/// <summary>The Orleans dashboard at /dashboard on the real silo: refused without an API key, served with one (header, or the cookie that ?key= sets).</summary>
[Collection(ServerCollection.Name)]
public sealed class DashboardTests(ServerFixture server)
{
    [Fact]
    public async Task TheDashboardNeedsAnApiKey()
    {
        using (var anonymous = server.Client(null))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/dashboard")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/dashboard?key=not-a-key")).StatusCode);
        }
        using (var stranger = server.Client("not-a-key"))
            Assert.Equal(HttpStatusCode.Unauthorized, (await stranger.GetAsync("/dashboard")).StatusCode);

        using (var client = server.Client())
        {
            // The dashboard's own page is /dashboard/ (it redirects /dashboard there, and a redirect drops the Authorization header).
            using var page = await client.GetAsync("/dashboard/");
            Assert.True(page.StatusCode == HttpStatusCode.OK, $"{page.StatusCode}: {page.Headers} {await page.Content.ReadAsStringAsync()}");
            Assert.Contains("html", (await page.Content.ReadAsStringAsync()).ToLowerInvariant());
        }

        // A browser: the key once in the address, then the cookie alone.
        var cookies = new CookieContainer();
        using var browser = new HttpClient(new HttpClientHandler { CookieContainer = cookies, AllowAutoRedirect = false }) { BaseAddress = server.BaseAddress };
        using (var first = await browser.GetAsync($"/dashboard?key={ServerFixture.Key}"))
        {
            Assert.Equal(HttpStatusCode.Redirect, first.StatusCode);
            Assert.Equal("/dashboard", first.Headers.Location?.OriginalString);
        }
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/dashboard/")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/v1/models")).StatusCode); // the cookie opens the dashboard only
    }
}
