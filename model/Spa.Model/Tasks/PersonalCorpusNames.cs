using System.Text.RegularExpressions;

namespace Spa.Model.Tasks;

public static partial class PersonalCorpus
{
    // Names the TinyStories models give their characters. Names that also open ordinary sentences ("May", "Will",
    // "Sunny", "Pat") are left out: a story starting "May I play?" must not get a character called May.
    private static readonly HashSet<string> CommonNames = new(StringComparer.Ordinal)
    {
        "Lily", "Tom", "Ben", "Timmy", "Sue", "Sam", "Max", "Anna", "Lucy", "Mia", "Jack", "Sara", "Sarah", "Bob", "Tim",
        "Amy", "Jake", "Kitty", "Spot", "Tommy", "Tony", "Toby", "Billy", "Benny", "Bobby", "Jimmy", "Johnny", "John",
        "Joe", "Joey", "Jill", "Jane", "Mary", "Emma", "Ella", "Ellie", "Lila", "Lola", "Molly", "Polly", "Daisy",
        "Rosie", "Rose", "Zoe", "Zoey", "Mike", "Mark", "Leo", "Luke", "Lucas", "Liam", "Noah", "Oliver", "Olivia",
        "Sophie", "Sophia", "Kate", "Katie", "Kim", "Grace", "Hannah", "Alice", "Emily", "Chloe", "Ava", "Bella", "Ruby",
        "Sally", "Susie", "Susan", "Peter", "Paul", "Pam", "Fred", "Freddy", "Ted", "Teddy", "Jenny", "Jen", "Jess",
        "Jessie", "Josh", "Andy", "Annie", "Dan", "Danny", "David", "Dave", "Eva", "Finn", "Harry", "Henry", "Jacob",
        "James", "Kevin", "Kyle", "Lisa", "Lulu", "Matt", "Nick", "Nora", "Pete", "Rex", "Rob", "Robby", "Roxy",
        "Sammy", "Sandy", "Sid", "Tina", "Zack", "Buddy", "Fluffy", "Whiskers", "Mittens", "Rover", "Fido", "Coco",
        "Bunny", "Pip", "Jojo", "Mimi", "Momo", "Nemo", "Benji", "Lenny", "Sparky", "Tweety", "Dolly", "Froggy",
        "Lizzy", "Betty", "Gary", "Larry", "Jerry", "Terry", "Tess", "Tessa", "Milly", "Millie", "Nina", "Nell", "Ollie",
        "Rosa", "Ron", "Roy", "Ryan", "Steve", "Ali", "Kai", "Kiki", "Lala", "Bea", "Dora", "Gus", "Hank",
    };

    // Capitalised words that stories use mid-sentence without being a character's name: family words and titles
    // ("said Mom", "Aunt Sue"), days and holidays.
    private static readonly HashSet<string> NotNames = new(StringComparer.Ordinal)
    {
        "Mom", "Mommy", "Mum", "Mummy", "Mama", "Ma", "Dad", "Daddy", "Papa", "Pa", "Grandma", "Grandpa", "Granny",
        "Grandmother", "Grandfather", "Nana", "Aunt", "Auntie", "Uncle", "Mr", "Mrs", "Ms", "Miss", "Mister", "Sir",
        "Dr", "Doctor", "Teacher", "Captain", "Officer", "King", "Queen", "Prince", "Princess", "Lady", "Baby", "Santa",
        "God", "Christmas", "Easter", "Halloween", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
        "Sunday", "English",
    };

    // Abbreviations whose full stop does not end a sentence: the name in "Mr. Brown" is mid-sentence.
    private static readonly HashSet<string> Titles = new(StringComparer.Ordinal) { "Mr", "Mrs", "Ms", "Dr", "St" };

    /// <summary>
    /// The character names of a story, in order of first appearance. A word (a maximal run of letters) is a name
    /// when it is capitalised (an upper-case letter then one or more lower-case letters), is not a family word, title,
    /// day or holiday, and either
    /// <list type="bullet">
    /// <item>is one of the common TinyStories names (Lily, Tom, Ben, Timmy, Sue, Sam, Max, ...), or</item>
    /// <item>appears at least twice where a sentence does not start, so that capitalisation cannot be explained by
    /// position. A sentence starts at the start of the text, after a line break, after '.', '!', '?' or ':' (quotes
    /// and spaces in between skipped; the full stop of "Mr." or "Dr." does not count), and right after an opening
    /// quotation mark or bracket.</item>
    /// </list>
    /// </summary>
    public static IReadOnlyList<string> DetectNames(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var order = new List<string>();
        var midSentence = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Match word in Word().Matches(text))
        {
            if (!IsCapitalised(word.Value) || NotNames.Contains(word.Value)) continue;
            if (!midSentence.ContainsKey(word.Value))
            {
                order.Add(word.Value);
                midSentence[word.Value] = 0;
            }
            if (!StartsSentence(text, word.Index)) midSentence[word.Value]++;
        }
        return order.Where(w => CommonNames.Contains(w) || midSentence[w] >= 2).ToList();
    }

    /// <summary>
    /// Replaces the story's character names (<see cref="DetectNames"/>) by <paramref name="privateNames"/>: the i-th
    /// distinct name to appear becomes <c>privateNames[i % privateNames.Count]</c>. Every whole-word occurrence is
    /// replaced, possessives included ("Lily's" becomes "Zorblax's"). Returns null when the story names nobody.
    /// </summary>
    public static PersonalStory? Personalise(string text, IReadOnlyList<string> privateNames)
    {
        ArgumentNullException.ThrowIfNull(text);
        CheckNames(privateNames);
        var baseNames = DetectNames(text);
        if (baseNames.Count == 0) return null;
        var mapping = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < baseNames.Count; i++) mapping[baseNames[i]] = privateNames[i % privateNames.Count];

        var result = new System.Text.StringBuilder(text.Length);
        var spans = new List<CharSpan>();
        var copied = 0;
        // Words are maximal runs of letters, so a match is a whole word: "Tom" in "Tommy" is never touched.
        foreach (Match word in Word().Matches(text))
        {
            if (!mapping.TryGetValue(word.Value, out var name)) continue;
            result.Append(text, copied, word.Index - copied);
            spans.Add(new CharSpan(result.Length, result.Length + name.Length));
            result.Append(name);
            copied = word.Index + word.Length;
        }
        result.Append(text, copied, text.Length - copied);
        var used = baseNames.Select(b => mapping[b]).Distinct().ToList();
        return new PersonalStory(result.ToString(), used, baseNames, spans);
    }

    /// <summary>Throws unless there is at least one private name and each is a single word of letters, none repeated.</summary>
    public static void CheckNames(IReadOnlyList<string> privateNames)
    {
        ArgumentNullException.ThrowIfNull(privateNames);
        if (privateNames.Count == 0) throw new ArgumentException("give at least one private name");
        foreach (var name in privateNames)
        {
            if (!Letters().IsMatch(name ?? "")) throw new ArgumentException($"private name \"{name}\" must be a single word of letters");
        }
        var repeated = privateNames.GroupBy(n => n, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (repeated != null) throw new ArgumentException($"private name \"{repeated.Key}\" is given twice");
    }

    /// <summary>True for a name the base's stories use or a capitalised word they use that is not a name (Mom, Monday).</summary>
    public static bool IsKnownWord(string word) => CommonNames.Contains(word) || NotNames.Contains(word);

    private static bool IsCapitalised(string word) =>
        word.Length >= 2 && char.IsUpper(word[0]) && word[1..].All(char.IsLower);

    private static bool StartsSentence(string text, int index)
    {
        var i = index - 1;
        if (i >= 0 && text[i] is '"' or '\'' or '\u201C' or '\u2018' or '(') return true;
        while (i >= 0 && text[i] is ' ' or '\t' or '"' or '\'' or '\u201C' or '\u201D' or '\u2018' or '\u2019') i--;
        if (i < 0) return true;
        return text[i] switch
        {
            '\n' or '\r' or '!' or '?' or ':' => true,
            '.' => !EndsWithTitle(text, i),
            _ => false,
        };
    }

    private static bool EndsWithTitle(string text, int end)
    {
        var start = end;
        while (start > 0 && char.IsLetter(text[start - 1])) start--;
        return Titles.Contains(text[start..end]);
    }

    [GeneratedRegex(@"\p{L}+")]
    private static partial Regex Word();

    [GeneratedRegex(@"^\p{L}+$")]
    private static partial Regex Letters();
}
