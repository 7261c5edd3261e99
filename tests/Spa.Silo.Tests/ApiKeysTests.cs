using Microsoft.Extensions.Configuration;

namespace Spa.Silo.Tests;

public sealed class ApiKeysTests
{
    private static IConfiguration Config(params (string Key, string User)[] keys) => new ConfigurationBuilder()
        .AddInMemoryCollection(keys.Select(k => new KeyValuePair<string, string?>($"{ApiKeys.Section}:{k.Key}", k.User)))
        .Build();

    [Fact]
    public void KeysMapToUsers()
    {
        var keys = new ApiKeys(Config(("alpha", "alice"), ("beta", "bob")), "gamma");
        Assert.Null(keys.GeneratedKey);
        Assert.Equal("alice", keys.Authenticate("alpha"));
        Assert.Equal("bob", keys.Authenticate("beta"));
        Assert.Equal(ApiKeys.DefaultUser, keys.Authenticate("gamma"));
        Assert.Null(keys.Authenticate("alph"));
        Assert.Null(keys.Authenticate(""));
        Assert.Null(keys.Authenticate(null));
    }

    [Fact]
    public void WithoutKeysOneIsGenerated()
    {
        var keys = new ApiKeys(Config(), null);
        Assert.NotNull(keys.GeneratedKey);
        Assert.Equal(1, keys.Count);
        Assert.Equal(ApiKeys.DefaultUser, keys.Authenticate(keys.GeneratedKey));
        Assert.NotEqual(keys.GeneratedKey, new ApiKeys(Config(), null).GeneratedKey);
    }

    [Theory]
    [InlineData("Bearer abc", "abc")]
    [InlineData("bearer  abc ", "abc")]
    [InlineData("Basic abc", null)]
    [InlineData("Bearer ", null)]
    [InlineData(null, null)]
    public void BearerTokens(string? header, string? token) => Assert.Equal(token, ApiKeys.BearerToken(header));
}
