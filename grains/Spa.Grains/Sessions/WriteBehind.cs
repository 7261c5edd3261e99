namespace Spa.Grains.Sessions;

/// <summary>
/// A session's state written behind its tokens: every <paramref name="every"/> tokens (0: only when flushed), each write
/// overlapped with the next token's work, one write in flight at a time.
/// </summary>
public sealed class WriteBehind(Func<Task> write, int every)
{
    private Task _inFlight = Task.CompletedTask;
    private int _unwritten; // tokens added since the last write began

    /// <summary>The write in flight; the state must not change before it is done.</summary>
    public Task InFlight => _inFlight;

    /// <summary>A token was added to the state: starts a write once <c>every</c> tokens are unwritten.</summary>
    public void TokenAdded()
    {
        if (++_unwritten < every || every <= 0) return;
        _unwritten = 0;
        _inFlight = write();
    }

    /// <summary>Writes the state, unless every token is in the write in flight (or <paramref name="always"/>), once that write is done.</summary>
    public async Task FlushAsync(bool always = false)
    {
        await _inFlight;
        if (_unwritten == 0 && !always) return;
        _unwritten = 0;
        _inFlight = write();
        await _inFlight;
    }
}
