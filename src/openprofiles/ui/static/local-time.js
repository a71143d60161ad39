// Times in the browser's own time zone. The pages write each time in UTC, inside
// <time datetime="2026-01-03T09:00:00Z">2026-01-03 09:00:00 UTC</time> (ui/history.py): correct
// without this script. With it, each such time reads in the zone the browser is set to, with the
// zone's short name ("2026-01-03 04:00:00 EST"), to the second when the UTC text was; the UTC
// reading stays in the title, for whoever compares with another system's logs.
"use strict";

(function () {
  function localize(element) {
    var when = new Date(element.getAttribute("datetime"));
    if (isNaN(when.getTime())) {
      return;
    }
    var original = element.textContent;
    var seconds = /\d\d:\d\d:\d\d/.test(original);
    var options = {
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
      timeZoneName: "short",
      // The date reads as the UTC text does (2026-01-03), in Latin digits whatever the
      // language; the zone's name is the browser language's.
      numberingSystem: "latn",
    };
    if (seconds) {
      options.second = "2-digit";
    }
    var parts = {};
    new Intl.DateTimeFormat(undefined, options).formatToParts(when).forEach(function (part) {
      parts[part.type] = part.value;
    });
    var text = parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" +
      parts.minute + (seconds ? ":" + parts.second : "") + " " + parts.timeZoneName;
    element.textContent = text;
    element.title = original;
  }

  function localizeAll() {
    document.querySelectorAll("time[datetime]").forEach(localize);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", localizeAll);
  } else {
    localizeAll();
  }
})();
