"""Source of the built-in review-sentiment data: writes lightning_adapt/data/builtin/sentiment/*.jsonl.

Every review below was written by hand for the lightning-adapt project (Apache-2.0); none is
copied from a dataset or a website. One review per line: ``+ `` marks Positive, ``- `` Negative.

The split is deterministic: for each label, each domain's reviews are shuffled with a fixed seed,
the domains are interleaved round-robin, and the sequence is cut into the four splits, so every
split is exactly balanced by label and close to balanced by domain.

Run from the repository root::

    python scripts/write_reviews.py          # rewrite the JSONL files
    python scripts/write_reviews.py --check  # only verify that the files on disk match
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
from pathlib import Path

SEED = 8
OUT_DIR = Path(__file__).resolve().parents[1] / "lightning_adapt" / "data" / "builtin" / "sentiment"
# Reviews per label in each split (so each split holds twice these numbers).
SPLIT_SIZES_PER_LABEL = {"demos": 20, "train": 150, "validation": 40, "test": 60}
NEAR_DUPLICATE_THRESHOLD = 0.6

RESTAURANTS = """
+ The lamb shoulder fell apart at the touch of a fork, and the mint sauce tasted homemade. We're already planning our next visit.
+ Tiny place, six tables, no music, and the best pho I've had outside Hanoi.
+ Not bad at all. I expected greasy diner food and got a crisp, well-seasoned omelette with proper hash browns.
+ Our waiter remembered my daughter's nut allergy without being reminded and checked every dish with the kitchen. That kind of care earns a regular customer.
+ Prices are a little steep, but the portions justify it and the tiramisu alone is worth the trip.
+ Five stars for the dumplings.
+ I came for a quick lunch and ended up staying two hours because the coffee kept getting better.
+ The parking is a nightmare and the chairs are hard, yet I keep coming back for the wood-fired margherita. Worth every annoyance.
+ Honestly did not think a vegan burger could make me forget beef, but here we are.
+ Booked for an anniversary dinner. Candlelit, quiet, and the chef sent out a small cake with our names piped on it. Lovely evening.
+ Fast, friendly, cheap. The breakfast burrito could feed two people.
+ The menu is short, which I have learned is a good sign; everything on it was done perfectly.
+ I wouldn't say the decor is anything special, but the curry was rich, fragrant and exactly as spicy as I asked.
+ Sushi so fresh it practically tasted of the sea. The omakase was generous and the chef explained each piece.
+ Came in soaked from the rain and the owner brought us towels before menus. The soup afterward was just as warm as the welcome.
+ Good bread, good butter, good wine list. Hard to ask for more on a Tuesday night.
+ A kids menu that isn't just chicken nuggets! My son devoured the little pasta bake.
+ We waited forty minutes for a table, which was annoying, but the brisket made me forget all about it.
+ Delicious.
+ Service was a touch slow during the rush, though the staff apologized and the food arrived hot and beautifully plated. I'd happily return.
+ The best thing I can say is that I have dreamed about their garlic noodles twice this week.
+ Solid neighborhood spot. Nothing fancy, just honest cooking and fair prices.
+ My gluten-free friend finally had a pizza she enjoyed, and the crust was crisp rather than cardboard.
+ The tasting menu was a little theatrical for my taste, but every course landed, especially the smoked beetroot.
+ Hard to find, easy to love. The tacos al pastor were dripping with flavor.
+ I ordered delivery expecting soggy fries and they arrived crunchy. Witchcraft.
+ Came here skeptical after the mixed reviews online. Left with a full belly and a takeaway box of cardamom buns.
+ The chef came out to ask how the risotto was. It was perfect, and I told her so.
+ Great value lunch special: soup, main and tea for less than a sandwich costs downtown.
+ Not the cheapest brunch in town, but the hollandaise is silky and the mimosas are bottomless in the truest sense.
+ Cozy, warm and a little noisy on weekends. The ramen broth is deep and porky and worth the racket.
+ Our group of twelve was seated together without fuss, and the kitchen sent food out in a sensible order. Impressive coordination.
+ I'm picky about steak and mine came exactly medium-rare with a proper crust.
+ The ice cream flavors change weekly; this week's brown butter pecan was outstanding.
+ Friendly bartender, strong cocktails, and the bar snacks are better than some restaurants' mains.
+ Simple Greek taverna food done right: grilled octopus, lemony potatoes, a salad with real feta.
+ It's loud, it's cramped and I would still give it top marks for the fried chicken.
+ Would recommend to anyone who likes proper Sichuan heat; the mapo tofu made my lips tingle in the best way.
+ A quiet little tearoom with scones that were still warm from the oven. Perfect afternoon.
+ Expected a tourist trap given the location. Was pleasantly proven wrong by the grilled sardines.
+ The staff handled a spilled drink at our table with good humor and brought a replacement on the house.
+ The pastries look almost too pretty to eat. Almost.
+ Our third visit this month, and consistency is clearly their strength.
+ Their lentil soup is the kind of thing your grandmother would make if your grandmother were a professional chef.
+ Can't fault a single thing about dinner last night.
+ The dessert menu was limited, but the main courses more than made up for it.
+ I've never had a bad meal here in five years.
+ Portions are modest, flavors are huge. The duck bao were gone in seconds.
+ Clean, bright, efficient. The poke bowls are built to order and the fish is good quality.
+ Reasonable wine markup, knowledgeable sommelier, no snobbery. A rare combination.
- Cold fries, warm soda and a burger that tasted like it had been reheated twice.
- Oh great, another forty-dollar plate of three scallops and a smear of puree. I left hungry and poorer.
- The food was fine, I suppose, but being ignored for twenty minutes after we sat down ruined any goodwill.
- I wouldn't call the pasta bad exactly; I'd call it unseasoned, overcooked and served on a cold plate.
- Found a hair in my salad. The manager shrugged.
- Lovely view of the harbor. Shame about everything that came out of the kitchen.
- We asked for the bill three times. When it came, it included two drinks we never ordered.
- Not worth the hype. The famous fried chicken was dry inside and oily outside.
- Loud music, sticky tables and a waiter who seemed personally offended by our questions about the menu.
- The curry had one sad piece of chicken floating in a bowl of orange water.
- Took my parents out for their anniversary. The steak arrived gray and the replacement took forty-five minutes. Never again.
- If you enjoy waiting an hour for lukewarm noodles, this is your place.
- Decent coffee, but the croissant was stale and the muffin was clearly from a supermarket packet.
- The online menu promised vegetarian options. There was exactly one, and it was a plate of grilled peppers.
- Overpriced, undersalted, overhyped.
- I really wanted to like this place since it's close to home, but two visits, two disappointing meals.
- My pizza came with a burnt bottom and a raw middle, which is honestly an achievement.
- Staff were friendly, I'll give them that. The food, however, was not something I'd order again.
- Delivery took ninety minutes and the soup had leaked through the bag onto everything else.
- The restrooms were filthy, which made me wonder what the kitchen looks like.
- The tasting menu felt like a series of tiny, expensive jokes with foam on top.
- Sushi rice was mushy and warm, and the salmon had a faint fishy smell. Avoid.
- They charged a service fee on top of expecting a tip, and the service was the worst part of the evening.
- Everything tasted of the same generic sauce, whether it was the beef, the tofu or the shrimp.
- The waiter recommended the special with great enthusiasm. It was the worst thing we ate.
- Nothing about this meal was memorable except the bill.
- Brunch was a mess: wrong orders, cold eggs, and a forty-minute gap between our coffees and our food.
- Cute interior can't hide a kitchen that doesn't know what seasoning is.
- Not terrible, not good. Mostly just sad, beige food at city-center prices.
- My dessert arrived before my main course, and my main course never arrived at all.
- The portions have shrunk by half since last year while the prices went up. I won't be back.
- Ordered the 'spicy' wings. They had roughly the heat of a glass of milk.
- Tables are so close together that I learned more about my neighbor's divorce than about the menu.
- The reservation meant nothing; we still waited thirty minutes at the door while walk-ins got seated.
- The fish and chips were more batter than fish, and the batter was soggy.
- Yes, the cocktails are pretty. They are also mostly ice and cost as much as a main course.
- Rude host, indifferent waiters, forgettable food. A hat trick.
- I got food poisoning after the mussels. Enough said.
- The bread basket was the highlight, and it was store-bought.
- They lost our takeaway order, then blamed us for giving the wrong name.
- A great spot if you like your burgers hockey-puck shaped and bone dry.
- The ramen broth was thin and tasted mostly of salt. The egg was hard-boiled, not jammy.
- Beautiful plating, tiny portions, and flavors that never quite came together. I expected much more for the price.
- Our server disappeared halfway through the meal and was replaced by no one.
- I should have read the reviews first.
- The salad was wilted, the dressing came from a bottle, and the croutons were soft.
- It's not that the food was awful; it's that nothing tasted like what the menu described.
- The kids' meals came out cold and the high chair had crumbs from previous diners stuck to it.
- Cheap, but you definitely get what you pay for.
- We stood outside in the cold for twenty minutes without a word from the staff, then gave up. The place down the street fed us instead, and well.
+ The first impression wasn't great: the host seemed flustered and our table wobbled. Then the food started arriving. Charred leeks with romesco, a perfectly pink pork chop, and a burnt Basque cheesecake that I would cross the city for. Rough edges, wonderful kitchen.
+ We brought my father-in-law, who complains about every restaurant on principle. He finished his plate, ordered a second dessert and asked for the chef's name. I have never seen anything like it.
+ Everything here is cooked over charcoal, so your clothes will smell of smoke afterwards. That is the only downside I can find. The flatbreads come out blistered, the kebabs are juicy, and the pickled chilies on every table are addictive.
+ It took me a while to warm to this place. The menu is odd, the music is odder, and the waiter insisted we share everything. By the end of the night, though, we'd tried eleven dishes, loved nine of them, and booked again for next month.
- I'll start with the good: the cocktails were interesting and the room is beautiful. After that it goes downhill. Our starters arrived after fifty minutes, the lamb was tough, and when I mentioned it the waiter told me that's how it's supposed to be.
- What a treat to pay eighteen dollars for avocado toast where the avocado was brown and the toast was cold. The coffee was good, I'll admit, but I won't be returning to try anything else.
- We've been coming here for years and it used to be our favorite. New owners, new menu, and sadly a new attitude. The dumplings are now frozen, the staff seem rushed, and the warmth that made it special is gone.
- They advertise a relaxed family atmosphere, and the playground outside is lovely. Inside, the children's menu is all fried, the adult menu is not much better, and our table was never wiped between courses. The kids enjoyed the swings, at least.
"""

ELECTRONICS = """
+ Battery lasts me two full days of heavy use, and the screen is bright enough to read in direct sunlight.
+ These earbuds block out the bus engine completely. My commute has never been this peaceful.
+ Not bad at all for the price. The keyboard has a satisfying click and the backlight is even.
+ Setup took five minutes: plug it in, scan the code, done. The router has not dropped a connection since.
+ The camera struggles a little in low light, but daytime photos are sharp and colors look natural. Happy with it overall.
+ My old laptop sounded like a jet engine. This one is silent even when compiling code.
+ Sturdy charging cable that has survived my dog chewing on it. Impressive.
+ I was ready to return the smartwatch after the first day, but after a firmware update the heart rate readings became accurate and the battery improved. Keeping it.
+ Crisp sound, deep bass without the boom, and it fits on my bookshelf.
+ The e-reader is light enough to hold in one hand while lying in bed. Best purchase of the year.
+ Bought it for my grandmother and she was making video calls within ten minutes.
+ The mouse is small for big hands, though it tracks perfectly and the side buttons are handy. Would buy again.
+ Power bank charged my phone four times on a camping trip. Does what it says.
+ Sharp picture, easy menus, and the remote actually makes sense.
+ The printer hasn't jammed once in six months, which must be some kind of record.
+ Works great.
+ The noise cancelling is so good that I missed my stop twice. That's a compliment.
+ I expected cheap plastic and got an aluminium shell that feels far more expensive than it was.
+ Monitor arrived with zero dead pixels and a factory calibration report in the box. Colors are spot on.
+ Customer support replaced my faulty charger within three days, no questions asked.
+ The robot vacuum maps the whole flat and avoids the cat's water bowl. I no longer sweep.
+ It's a bit heavy to carry around, but the performance makes up for it.
+ Bluetooth pairing is instant and it remembers both my phone and my laptop.
+ The tablet's stylus feels like a real pen on paper. My sketches have never looked better.
+ Five years on and the external drive still works flawlessly. Just bought a second one.
+ Finally, a webcam that doesn't make me look like I'm calling from a submarine.
+ The smart plug app is basic, yet the plug itself has been completely reliable. No complaints.
+ I wouldn't have guessed such a small speaker could fill a room this well.
+ Fast charging really is fast: zero to sixty percent during my morning shower.
+ Clear instructions, sensible buttons, quiet operation. The kind of gadget you forget about because it just works.
+ The gaming headset is comfortable for long sessions and the microphone gets praise from my teammates.
+ The fitness tracker's sleep data nudged me to go to bed earlier. I feel better for it.
+ Cheap graphics card that runs every game I own at high settings. Can't argue with that.
+ Drop-tested by my toddler from the kitchen table. Not a scratch.
+ The keyboard's travel is shallow, which took some getting used to, but now I type faster than ever.
+ The scanner turned a shoebox of old family photos into crisp digital files in an afternoon.
+ Good value. Does the job without fuss.
+ I've owned three different phones from this brand and this is by far the best one.
+ The projector turned our garden wall into a cinema. Neighbors came over with popcorn.
+ Quiet fan, cool temperatures, easy install. My desktop is finally silent.
+ Compared to my previous headphones these are lighter, clearer and cost half as much.
+ The doorbell camera caught the person stealing parcels from our street. Paid for itself.
+ Hesitated because of the mixed reviews, yet mine has been rock solid for eight months.
+ Slim, fast and genuinely all-day battery. The trackpad is the best I've used on a Windows machine.
+ The thermostat learned our schedule within a week and our heating bill dropped noticeably.
+ The dash cam records clear plates even at night. Installation was simple.
+ Honestly surprised how good the built-in speakers are on this TV.
+ A small upgrade, but a welcome one: USB-C on both ends, finally.
+ The coffee grinder is loud, admittedly. It's also consistent, easy to clean and grinds fine enough for espresso.
+ Bought two more as gifts.
- The battery went from full to dead in four hours of light browsing.
- Stopped charging after five weeks. Support told me to "try a different outlet."
- Wow, a laptop that needs to be plugged in at all times. Truly portable.
- The sound is tinny and the left earbud keeps disconnecting.
- The screen looked great in the store demo. At home it has a yellow tint in one corner that no setting can fix.
- I wouldn't call it a smart speaker; it misunderstands half of what I say and ignores the other half.
- The remote feels like a toy and the buttons started sticking after a month.
- It works, technically. It also takes three minutes to boot and crashes whenever I open more than two apps.
- Returned it.
- The fitness tracker counted 4,000 steps while I was sitting on a train.
- Nice design, terrible software. The companion app demands an account, location access and my contacts just to set an alarm.
- Overheats when gaming for more than twenty minutes, then throttles to a slideshow.
- Router drops the connection every evening right when everyone's streaming. I've reset it a dozen times.
- The camera is decent, I'll grant that, but the phone is so slippery it has already slid off two tables.
- The printer refuses to print in black and white when a color cartridge is empty. Pure greed.
- Keyboard arrived with a dead spacebar. The replacement has a dead letter E.
- The noise cancelling produces a strange pressure in my ears and a constant faint hiss.
- Not worth the upgrade from last year's model; same camera, worse battery, higher price.
- The charging case scratches if you look at it, and the lid hinge is already loose.
- My vacuum robot spends most of its time stuck under the sofa, beeping for help.
- The cable frayed at the connector within two weeks of normal use.
- Plenty of features on paper. In practice, half of them need a subscription.
- Instructions were in tiny print and skipped the one step I actually needed.
- Mouse double-clicks on its own. Very helpful when deleting files.
- It's not the worst tablet I've used, but the lag when scrolling makes it exhausting to read on.
- The smartwatch says my heart is racing at 180 beats per minute while I'm asleep. Either it's broken or I should see a doctor.
- The webcam's autofocus keeps hunting back and forth during every video call.
- Bluetooth range of about two meters. Walk to the kettle and the music cuts out.
- Customer service kept me on hold for an hour and then hung up.
- The fan is louder than my old desktop, which I replaced specifically because it was loud.
- Picture quality is fine; the smart TV interface, however, is slow, full of ads and impossible to turn off.
- Dead on arrival.
- A firmware update bricked it, and the company's forum is full of people with the same problem.
- The external drive makes a clicking noise and lost a folder of my photos. Can't trust it.
- Speakers sound muddy at any volume above half. The bass just smears everything.
- The charger gets alarmingly hot. I stopped using it overnight out of fear.
- Took the advertised 'waterproof' headphones into a light drizzle. They did not survive.
- The camera app takes so long to open that the moment is always gone.
- Lasted exactly one day past the warranty. Almost impressive.
- The stylus lags behind my hand, so every line I draw looks shaky.
- Great specs on paper, average at best in real life.
- The doorbell camera notifies me about every passing car but missed the courier entirely.
- I wanted to love this e-reader, but the page turns are sluggish and the front light is uneven.
- Bought for my son's school work. The hinge cracked in the first term.
- Setup required downloading three separate apps and creating two accounts. I gave up after an hour.
- Sure, it's cheap. It also feels cheap, sounds cheap and broke like something cheap.
- The thermostat's schedule resets itself whenever the power flickers, so we woke up to a freezing house twice.
- Microphone makes me sound like I'm speaking from inside a tin can, according to everyone on my calls.
- Couldn't even get it to turn on.
- Three replacements, three faulty units. I have given up on this brand.
+ I read every review before buying this vacuum and half of them complained about the app. Yes, the app is clunky. But the suction is remarkable, the battery covers our whole house, and the bin is easy to empty. I've stopped noticing the app entirely.
+ My teenage son is brutal on headphones, usually breaking a pair every few months. This pair has survived a year of being stuffed into a school bag, sat on and dropped down the stairs. The sound is still clear and the hinge still tight.
+ The camera is the reason I bought this phone and it doesn't disappoint. Portraits look natural, the zoom is usable, and night shots are surprisingly clean. Battery life is merely average, but I'd make that trade again.
+ Honestly, I expected this budget laptop to be a stopgap until I could afford something better. Eighteen months later I'm still using it every day for writing, spreadsheets and the occasional film. The screen is dim, but nothing else bothers me.
- On paper this smartwatch does everything: sleep tracking, GPS, payments, messages. In reality the GPS takes five minutes to lock on, the payment feature failed at every shop I tried, and the battery barely lasts a day. I'm back to my old watch.
- The speaker sounds lovely for the first half hour. After that it starts to crackle, then cuts out, then reconnects at full volume, usually at night. I tried three different phones, so the problem is definitely the speaker.
- I appreciate the eco-friendly packaging and the sleek design. Unfortunately those are the only things I appreciate. The tablet is sluggish, the screen scratches easily, and the promised software updates stopped after six months.
- Support was polite, I'll say that much. Polite while telling me the dead pixel cluster in the middle of my new monitor was 'within tolerance', polite while refusing a return, and polite while closing my ticket.
"""

FILMS = """
+ A quiet, patient drama that trusts its audience. The final scene left the whole cinema silent.
+ I laughed so hard at the wedding scene that I missed the next two jokes.
+ Not bad at all for a sequel; it actually deepens the first film instead of just repeating it.
+ The plot has a few holes you could drive a truck through, but the performances are so committed that I didn't care.
+ Gorgeous cinematography. Every frame of the desert looks like a painting.
+ My kids watched it twice in a row and I didn't mind sitting through it again.
+ The lead actress carries the film with a performance that is fierce, funny and heartbreaking all at once.
+ It runs nearly three hours and I didn't check the time once.
+ A horror film that scares with silence rather than jump scares. I slept with the lights on.
+ Charming, small and sincere. Exactly the kind of film they rarely make anymore.
+ The first act drags, I'll admit. Stick with it, because the second half is stunning.
+ Masterpiece.
+ The documentary made me care deeply about beekeeping, which I did not think was possible.
+ Clever script, snappy dialogue and a villain you almost root for.
+ I went in expecting a forgettable action flick and came out wanting to see it again on the biggest screen possible.
+ The score is beautiful; I've been listening to the soundtrack all week.
+ It's a simple love story, told with such warmth that it never feels simple.
+ Some of the jokes haven't aged well, but as a whole it remains a delight.
+ Finally an adaptation that respects the book while still being its own thing.
+ The animation is breathtaking, and the story has real emotional weight for adults too.
+ I wouldn't call it perfect, though I'd call it the best thriller I've seen this year.
+ Tense, tight, ninety minutes, not a wasted scene.
+ The ensemble cast has such natural chemistry that the family dinner scenes feel improvised.
+ Went with low expectations because of the trailer. The trailer does this film no justice.
+ A brave, strange, wonderful film that will divide people. I loved it.
+ The fight choreography is inventive and easy to follow, which is rarer than it should be.
+ I cried, my partner cried, the man behind us cried.
+ A bit slow for my teenager, but I found it moving and thoughtful.
+ Funny without being mean, sweet without being sticky.
+ The twist actually earns itself; on a second viewing all the clues are there.
+ An old-fashioned adventure with practical effects and real stunts. I grinned the whole time.
+ The director does more with one room and two actors than most blockbusters do with a hundred million dollars.
+ Subtitled films usually lose me, but this one had me hooked from the opening shot.
+ Costumes, sets and music all transport you straight to 1920s Shanghai.
+ Not as good as the original, sure, yet still far better than it had any right to be.
+ Worth it for the car chase alone.
+ A gentle comedy about retirement that got my parents laughing out loud.
+ The performances are so good that the predictable story barely matters.
+ Smart science fiction that asks real questions and doesn't spoon-feed the answers.
+ I've recommended it to everyone I know.
+ The pacing is slightly uneven, though the ending pulls everything together beautifully.
+ This is how you make a musical for people who think they hate musicals.
+ Every character, even the ones with two lines, feels like a real person.
+ A war film that never glorifies war. Harrowing and necessary.
+ Great date night movie: light, romantic and genuinely funny.
+ Honestly the most fun I've had in a cinema in years.
+ The child actors are remarkably good, never cloying.
+ It's odd, it's long and it's wonderful.
+ The mystery kept me guessing right up to the last five minutes.
+ Rewatched it at home and noticed even more lovely details.
- Two and a half hours of people staring meaningfully out of windows.
- The trailer contained every good joke, so the film itself was just the filler in between.
- Brilliant, if your idea of brilliant is a plot twist you can see coming from the opening credits.
- I wouldn't call it terrible, but I wouldn't call it a movie either; it felt like a feature-length advert.
- The CGI monster looked like it had wandered in from a video game made in 2005.
- Fell asleep halfway through and didn't feel I'd missed anything when I woke up.
- Great cast, wasted on a script that gives them nothing to do.
- Not funny. Not once.
- The sequel undoes everything that made the original special and replaces it with explosions.
- The dialogue is so clunky that the actors seem embarrassed to be saying it.
- Walked out after an hour. Life is too short.
- The soundtrack is lovely, and that's the only compliment I can give.
- Every character makes the dumbest possible decision in every scene, just to keep the plot moving.
- It wants to be profound so badly that it forgets to be interesting.
- The shaky camera made me feel genuinely seasick.
- Lots of style, zero substance.
- I was promised a horror film and got a series of loud noises and a cat jumping out of a cupboard.
- The book was subtle and moving; the film turns it into a cheap melodrama.
- My kids were bored within twenty minutes, and honestly so was I.
- The romance has all the chemistry of two people waiting for the same bus.
- Some striking images, I'll admit, but they can't rescue a story that goes nowhere.
- It's three different films stitched together, and none of them is finished.
- Predictable from start to finish.
- The ending is a cheat; it undoes the whole story with a dream sequence.
- The lead tries hard, but he's fighting a script that thinks shouting is the same as acting.
- Two hours I'll never get back.
- A comedy where the biggest laugh came from a phone ringing in the audience.
- Visually dark in the literal sense: I could barely see what was happening in half the scenes.
- The documentary picks a side in the first minute and ignores every inconvenient fact after that.
- Not as clever as it thinks it is, and not nearly as clever as its fans claim.
- The animation is pretty enough, though the songs are forgettable and the jokes fall flat.
- It spends so long setting up future sequels that it forgets to tell a story of its own.
- The accents are all over the place, sometimes within the same sentence.
- Mildly diverting at best, and far too long for what it is.
- If you've seen the poster you've seen the film.
- The heist is so convoluted that even the characters seem confused about the plan.
- I normally enjoy this director, but this felt like a parody of his earlier work.
- Pretentious, slow and oddly smug.
- Honestly it's not awful for the first twenty minutes. Then the plot arrives.
- The villain's motivation is explained in one line of dialogue and makes no sense.
- Loud, long and empty.
- The musical numbers stop the story dead every single time.
- Glad I waited for it to come to streaming. Even then it felt overpriced.
- A thriller with no thrills and a mystery with no mystery.
- The film mocks its own characters so constantly that there's no reason to care about any of them.
- Started strong, then collapsed into a mess of flashbacks and voiceovers.
- Edited as if the editor had a train to catch.
- It's just the original film again, with a bigger budget and less heart.
- Children might enjoy the bright colors; adults should bring a book.
- The reviews called it a modern classic. I call it a chore.
+ The opening twenty minutes are confusing, and I nearly gave up. I'm glad I didn't. Once the two timelines start to meet, the film becomes gripping, and the last scene made me rethink everything I'd seen. I went straight back to watch it a second time.
+ My expectations could not have been lower: a talking-animal film based on a toy line. Somehow it's witty, the voice cast is brilliant, and there's a real story about friendship underneath the slapstick. The kids loved it and so did I.
+ It's a slow film, and the director is in no hurry to explain anything. If you can settle into that rhythm, though, it's hypnotic. The long shots of the fishing village at dawn will stay with me for a long time.
+ Critics called it messy, and they're not wrong; there are at least two subplots too many. Still, I haven't had this much fun at the pictures in ages. The central performance is magnetic and the final set piece had the audience cheering.
- The first trailer made this look like a smart, tense thriller. What we got is a muddled chase movie in which nobody behaves like a human being. By the time the villain delivered his third monologue, half our row was checking their phones.
- I really wanted to love it. The production design is extraordinary and the lead actor clearly gave it everything. But the story meanders for nearly three hours without building to anything, and the ending simply stops rather than concludes.
- Ah yes, the classic formula: a gruff cop, a wisecracking partner, a warehouse explosion, a speech about family. I could have written this on a napkin. To be fair, so could the screenwriters, judging by the results.
- A documentary should make you curious about its subject. This one made me curious about how much longer it would last. Interview after interview repeats the same three facts, and the music tells you what to feel in every scene.
"""

HOTELS = """
+ The room was spotless, the bed was huge and the blackout curtains actually blacked everything out.
+ Reception upgraded us to a sea-view room for our honeymoon without us even asking.
+ Not bad at all for a budget hotel: clean sheets, hot shower, quiet street.
+ The breakfast buffet was the best I've seen in years, with fresh pastries, eggs cooked to order and proper coffee.
+ A little far from the center, but the free shuttle runs every twenty minutes and the drivers are lovely.
+ Staff went above and beyond when my luggage was lost, lending me a phone charger and toiletries until it arrived.
+ The pool is small, yet it's heated, clean and rarely busy. We used it every evening.
+ Perfect location for exploring the old town on foot.
+ Old building with creaky floors and lots of character. Charming rather than shabby.
+ I travel for work constantly, and this is one of the few hotels where the desk chair is actually comfortable.
+ The concierge booked us a restaurant that turned out to be the highlight of our trip.
+ Check-in took two minutes, and they let us into the room three hours early.
+ Lovely.
+ The spa treatments are pricey but excellent; I left feeling like a new person.
+ Wi-Fi was fast enough for video calls, which is rare in hotels this size.
+ The family room had bunk beds for the kids and a separate space for us. Genius.
+ Bathroom was a bit dated, though everything worked and it was very clean. Would stay again.
+ Housekeeping folded my pajamas into a swan. Ridiculous and delightful.
+ Quiet even though it's right next to the train station. Excellent soundproofing.
+ Friendly owners who gave us a hand-drawn map of their favorite walks.
+ I wouldn't say it's luxurious, but for the price it's comfortable, tidy and well run.
+ The rooftop bar has the best sunset view in the city.
+ Our flight was delayed and we arrived at 2 a.m.; the night porter still greeted us with a smile and a cup of tea.
+ The bed was so comfortable I asked for the mattress brand at checkout.
+ Beautiful gardens, hammocks in the shade, and a library of books left by previous guests.
+ Pet-friendly in practice, not just on paper; our dog got his own bowl and a treat.
+ The room is tiny, as expected in this neighborhood, but cleverly designed with lots of storage.
+ Everything about our stay was easy, and I mean that as high praise.
+ The mountain lodge had a roaring fire in the lounge every evening and hearty dinners after long hikes.
+ Booked one night, stayed four.
+ Free late checkout made our last day so much more relaxing.
+ Excellent accessibility: a step-free shower, grab rails and staff who didn't make a fuss.
+ The renovation has transformed this place; it's now modern, bright and very good value.
+ Hostel-level price, hotel-level comfort.
+ A bit of street noise on Friday night, otherwise a flawless stay.
+ The guesthouse owner cooked us a traditional breakfast every morning and wouldn't take extra money for it.
+ The kids' club kept our children entertained, which meant we actually got to read by the pool.
+ They remembered us from last year and had our favorite room ready.
+ The gym is better equipped than the one I pay for at home.
+ Clean, safe, central. Exactly what a solo traveler needs.
+ The minibar prices are silly, but everything else about the place is superb.
+ Sea breeze, balcony, cold drink. I never wanted to leave.
+ Honestly one of the best hotel stays I've had in a decade of travel.
+ Small boutique hotel where every room is decorated differently. Ours had a clawfoot bathtub.
+ The staff arranged a surprise birthday cake for my wife and sang along with the waiters.
+ Great value for a city-center hotel during a festival weekend.
+ The air conditioning was a little noisy at first; maintenance fixed it within the hour.
+ Towels were fluffy, pillows were plentiful, and the shower pressure was excellent.
+ Wouldn't hesitate to recommend it to friends and family.
+ Our ski-in, ski-out chalet saved us hours of trudging with equipment. Worth every penny.
- The photos online must have been taken a decade ago. The carpet was stained and the curtains were held up with tape.
- Paper-thin walls. I now know far too much about the couple in room 214.
- Oh, wonderful, a 'sea view' that turned out to be a sliver of water between two car parks.
- I wouldn't say the staff were rude, exactly; they simply acted as if guests were an inconvenience.
- Mold in the shower and a smell of damp in the whole room.
- The breakfast was fine, but the room was so hot and the air conditioning so broken that we barely slept.
- They gave away our prepaid room and sent us to a sister hotel forty minutes away.
- A hidden resort fee doubled the price we'd been quoted.
- Wi-Fi only worked in the lobby, and only if you stood near the plant.
- The bed sagged in the middle so badly that we both rolled into the dip all night.
- Not clean. Hairs on the pillow, dust on every surface.
- The pool was closed for maintenance for our entire stay, which nobody mentioned when we booked.
- Great location, I'll give it that. Sadly location doesn't help you sleep on a mattress this lumpy.
- Check-in took over an hour because only one person was working the desk.
- The 'continental breakfast' was a basket of cereal packets and a jug of orange drink.
- Construction work started outside our window at seven every morning.
- Avoid.
- We found a cockroach in the bathroom on the first night. Management offered us a discount on the minibar.
- The elevator broke on day one and we were on the ninth floor.
- Overpriced for what you get, and what you get is not much.
- The shower alternated between scalding and ice-cold without warning.
- Charming building, miserable service.
- We were charged twice for the room and it took three weeks of emails to get a refund.
- Tiny room, noisy street, no blackout curtains. Sleep was not on the menu.
- Housekeeping never came once in four nights, even though we left the sign out every morning.
- The spa was a hot tub in a basement with a broken heater.
- Front desk staff laughed when I reported the broken lock. It was never fixed.
- Lovely gardens, but the rooms feel like they haven't been touched since the 1980s, and not in a charming way.
- Parking was advertised as free. It cost thirty euros a night.
- The soundproofing is nonexistent and the nightclub across the road closes at four.
- Smelled strongly of cigarette smoke despite being a non-smoking room.
- The towels were thin, gray and smelled faintly of bleach.
- Our 'family suite' was a double room with a camp bed squeezed in next to the wardrobe.
- Staff seemed to be in training, which would be fine if anyone was training them.
- I'm not fussy about hotels, but this one managed to disappoint me anyway.
- The check-out bill contained minibar items we never touched, and arguing about it made us miss our train.
- The room was clean enough, though the constant hum from the ice machine outside the door drove us mad.
- Five stars on the sign, two stars in reality.
- Breakfast ended at 9 sharp and the staff started clearing plates at 8:40.
- The heating didn't work, and the extra blanket they brought us had a hole in it.
- The hotel was fine if you don't need to sleep, shower or use the internet.
- Our booking for a quiet room got us the one above the kitchen extractor fan.
- Dirty windows, a broken kettle, and a TV remote with no batteries.
- Honestly, a hostel would have been cleaner and friendlier.
- The 'short walk to the beach' is a twenty-five-minute hike along a busy road with no pavement.
- Rooms are renovated, but the service hasn't caught up: nobody answered the phone at reception all evening.
- Our luggage was left in the rain while the porter chatted with a taxi driver.
- The wedding party in the ballroom kept the whole hotel awake until 3 a.m., and the manager's response was a shrug.
- I expected more from a chain with this reputation.
- Never again, and I'll be telling my colleagues the same.
+ I was nervous booking a hotel this cheap in such an expensive city, and the room is undeniably small. But it was spotless, the bed was firm and comfortable, the staff gave great tips for dinner, and we were two minutes from the metro. Would book again without hesitation.
+ Our room wasn't ready when we arrived after an overnight flight, which was frustrating. The manager apologized, gave us breakfast on the house and a room with a balcony when it was ready. The rest of the week was faultless.
+ We chose this farmhouse inn for a quiet weekend and got exactly that. No TV, patchy signal, sheep outside the window. The dinners were home-cooked, the fires were lit and I slept better than I have in months.
+ The hotel is old and you notice it: the elevator is slow and the radiators clank. None of that matters much when the staff treat you like a returning friend and the view from the breakfast room looks out over the whole bay.
- On arrival we were told the room we booked was unavailable and given one facing the service yard, where delivery trucks unloaded from five in the morning. We asked to move every day; every day we were told maybe tomorrow. Tomorrow never came.
- Everything looked luxurious, from the marble lobby to the velvet armchairs. Then we tried to sleep. The air conditioning rattled, the bathroom fan couldn't be switched off, and someone's alarm in the next room went off at five on each of our three mornings.
- What a relaxing spa break, if you enjoy queueing for the sauna, fighting for loungers and being upsold a massage at every turn. The treatment itself was fine. Everything around it felt like a crowded airport terminal.
- I've stayed at this hotel for business four times. The first three stays were fine. This time the room hadn't been cleaned, the desk lamp didn't work and breakfast ran out of almost everything by eight. I'll try somewhere else next quarter.
"""

BOOKS = """
+ I stayed up until three in the morning to finish it, and I don't regret a minute.
+ The prose is spare and precise; every sentence feels carefully placed.
+ Not bad at all for a debut, and the last fifty pages are genuinely gripping.
+ A cookbook where every recipe I've tried has actually worked on the first attempt.
+ The middle section sags a little, but the characters are so alive that I forgave it.
+ My book club argued about this novel for two hours. That's the best compliment I can give.
+ A history book that reads like a thriller without sacrificing accuracy.
+ I bought it for the train and missed my stop.
+ The illustrations make this picture book a joy to read aloud, and my daughter asks for it every night.
+ Warm, funny and wise about grief without ever being heavy-handed.
+ The translation is so smooth that you forget the book was written in another language.
+ I wouldn't call it light reading, yet it's far more accessible than I feared.
+ Clear explanations and good diagrams made statistics finally make sense to me.
+ Brilliant.
+ The audiobook narrator gives every character a distinct voice, which made the long family saga easy to follow.
+ It's the kind of mystery where the solution feels both surprising and inevitable.
+ Short stories that each hit like a small punch to the heart.
+ Took me a few chapters to get into, but then I couldn't put it down.
+ The poetry collection is uneven, though its best poems are among the finest I've read in years.
+ The gardening guide is practical, well organized and honest about what can go wrong.
+ A fantasy world with its own politics, religions and economy, all revealed without info-dumps.
+ Funny travel writing that also taught me a lot about the places it visits.
+ I've gifted this memoir to three friends already.
+ Every chapter ends on a hook, and somehow none of them feel cheap.
+ The biography is meticulously researched and still manages to be a page-turner.
+ Perfect beach read: breezy, romantic, with just enough drama.
+ Some of the science is simplified, which is understandable; the big ideas come through vividly.
+ The characters' letters to each other are so tender I reread several of them.
+ A practical guide to personal finance that doesn't lecture or assume you're already rich.
+ I expected a dry textbook and found myself underlining half the pages.
+ Hauntingly atmospheric. The fog-bound village felt like a character in its own right.
+ The author's voice is so distinctive I could pick her prose out of a lineup.
+ A slim book, but there's more in it than in most doorstoppers.
+ My teenage son, who never reads, finished it in a weekend.
+ The ending made me immediately flip back to chapter one to start again.
+ Well paced, cleverly plotted and never condescending to younger readers.
+ Beautiful hardcover edition, sturdy binding, and the story inside lives up to the packaging.
+ Not every essay works, but the ones that do are dazzling.
+ A rare self-help book that offers concrete advice instead of slogans.
+ The slow-burn romance is absolutely worth the wait.
+ Gentle, cozy and quietly funny, like a cup of tea in book form.
+ The world-building in the sequel surpasses the first book.
+ It made me see my own city with new eyes.
+ Meticulous, moving and impossible to forget.
+ I borrowed it from the library and then bought my own copy to keep.
+ The knitting patterns are clearly written with helpful photos at each step.
+ A comic novel that made me laugh out loud on a crowded bus, to the alarm of other passengers.
+ The dense opening chapters almost lost me; I'm so glad I persevered.
+ Ideal for anyone starting to learn about astronomy.
+ I'll read anything this author writes from now on.
- Three hundred pages of characters explaining the plot to each other.
- The twist is revealed on the back cover. Who approved that?
- Oh good, another thriller where the detective is a troubled alcoholic with a dark past. How original.
- I wouldn't call it badly written; I'd call it badly edited, since it's at least two hundred pages too long.
- The recipes don't work. I tried four and all of them needed twice the cooking time stated.
- Couldn't finish it.
- The e-book edition is riddled with typos and broken formatting.
- A memoir in which the author seems to have learned nothing from the events described.
- The first chapter is wonderful, and the remaining twenty never live up to it.
- Too many characters with similar names, and no family tree to help.
- The history is full of errors that a quick search would have caught.
- Dull, dull, dull.
- The romance is creepy rather than romantic; he ignores everything she says.
- The self-help advice boils down to 'be rich and have free time.'
- My copy arrived with pages printed upside down in the middle section.
- Interesting premise, flat execution.
- I loved the first two books in the series, which makes this third one all the more disappointing.
- The author clearly did not research the city where the novel is set; half the street names are wrong.
- The poems feel like greeting card verses with the line breaks moved around.
- Ends on a cliffhanger with no resolution, and the sequel won't be out for years.
- The science book keeps repeating the same point with slightly different analogies.
- Pretentious prose that hides a thin and predictable plot.
- I found the main character so unpleasant that I stopped caring what happened to her by page fifty.
- The cover is gorgeous. Unfortunately I had to read what was inside it.
- A children's book with a moral so heavy-handed that even my six-year-old rolled her eyes.
- The audiobook narrator mispronounces half the names and reads every line in the same monotone.
- It's not the worst book I've read this year, but it's close.
- The mystery is solved by a coincidence in the final chapter. Cheap.
- Nothing happens, slowly, for four hundred pages.
- The gardening guide was written for a climate nothing like mine, which the cover never mentions.
- A travel book that mostly describes the hotels the author stayed in.
- The dialogue reads as if no human being has ever spoken aloud in front of the author.
- The paperback's binding cracked the first time I opened it.
- I was promised a page-turner and got a sleeping aid.
- The textbook has exercises but no answers, which makes it useless for self-study.
- Great reviews, big prize, and I have no idea why.
- The fantasy world is borrowed wholesale from better-known series.
- The biography reads like a press release.
- It starts brilliantly and then loses its nerve.
- The narrator is a serial liar, which could be interesting, but the book never does anything with it.
- Too long, too slow, too pleased with itself.
- The knitting instructions skip steps and the photos don't match the text.
- The essays were clearly written as blog posts and never edited into a book.
- The big reveal contradicts something stated clearly in chapter three.
- I read it for my book club and was the only one who finished it, which tells you something.
- The finance book recommends investment products that the author's own company happens to sell.
- The sequel rewrites the first book's ending and I felt cheated.
- Cute illustrations can't save a story with no beginning, middle or end.
- The footnotes are more interesting than the main text, which is not a compliment to the main text.
- I'm donating my copy to the charity shop, and I almost feel guilty doing it.
+ I almost gave up around page eighty, when the story seemed to lose its way in a long flashback. Keep going. Everything in that flashback matters, and the final third is as moving as anything I've read in years. I finished it in tears on a Sunday afternoon.
+ This is a dense book, and it isn't for everyone. The author assumes you'll work for it. But the argument is careful, the evidence is fascinating, and I came away genuinely changing my mind about how cities grow. Worth the effort.
+ I bought this for my nephew and ended up reading it myself before wrapping it. The jokes work for both kids and adults, the pictures are full of hidden details, and the story has a lovely message that isn't rammed down your throat.
+ Not a book I'd normally pick up, since I rarely read science fiction. A friend insisted, and I'm grateful. The aliens are truly alien, the humans are flawed and recognizable, and the ending is both hopeful and unsettling.
- The premise had me excited: a lighthouse keeper receives letters from a stranger who seems to know the future. Sadly the execution is clumsy. The letters all sound the same, the keeper never asks the obvious questions, and the reveal is lifted straight from a dozen other novels.
- Fantastic, another five-hundred-page fantasy novel where the first three hundred pages are about grain tariffs. By the time a dragon finally showed up, I honestly no longer cared whether it ate anyone.
- I can see why some readers like it. The setting is vivid and a few chapters are beautifully written. But the narrator is so self-absorbed and the plot so thin that I had to force myself through the last hundred pages, and the ending made it feel like a waste.
- This cookbook photographs beautifully and would look great on a coffee table. Actually cooking from it is another matter: ingredient lists leave things out, the oven temperatures seem wrong, and two of the cakes I baked sank in the middle.
"""

DOMAINS = {
    "restaurants": RESTAURANTS,
    "electronics": ELECTRONICS,
    "films": FILMS,
    "hotels": HOTELS,
    "books": BOOKS,
}


def parse(domain: str, block: str) -> list[dict]:
    """Parse one domain block into rows ``{"text", "label", "domain"}``."""
    rows = []
    for line_no, line in enumerate(block.strip().splitlines(), start=1):
        marker, _, text = line.partition(" ")
        if marker not in ("+", "-") or not text.strip():
            raise ValueError(f"{domain} block, line {line_no}: expected '+ text' or '- text', got {line!r}")
        rows.append({"text": text.strip(), "label": "Positive" if marker == "+" else "Negative", "domain": domain})
    return rows


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits and inner apostrophes)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def jaccard(a: set, b: set) -> float:
    """Jaccard similarity of two sets (0.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def max_word_set_jaccard(texts: list[str]) -> tuple[float, str, str]:
    """The most similar pair of texts by Jaccard similarity of their word sets."""
    sets = [set(words(t)) for t in texts]
    best = (0.0, "", "")
    for i, j in itertools.combinations(range(len(texts)), 2):
        s = jaccard(sets[i], sets[j])
        if s > best[0]:
            best = (s, texts[i], texts[j])
    return best


def make_splits(seed: int = SEED) -> dict[str, list[dict]]:
    """All reviews cut into the fixed splits, balanced by label and interleaved by domain."""
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_SIZES_PER_LABEL}
    for label in ("Positive", "Negative"):
        per_domain = []
        for domain, block in DOMAINS.items():
            rows = [r for r in parse(domain, block) if r["label"] == label]
            rng.shuffle(rows)
            per_domain.append(rows)
        interleaved = [r for group in itertools.zip_longest(*per_domain) for r in group if r is not None]
        needed = sum(SPLIT_SIZES_PER_LABEL.values())
        if len(interleaved) < needed:
            raise ValueError(f"only {len(interleaved)} {label} reviews, the splits need {needed}")
        start = 0
        for name, size in SPLIT_SIZES_PER_LABEL.items():
            splits[name].extend(interleaved[start : start + size])
            start += size
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def render(rows: list[dict]) -> str:
    """JSONL text of the rows."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the files on disk instead of writing them")
    args = parser.parse_args(argv)

    all_rows = [r for d, b in DOMAINS.items() for r in parse(d, b)]
    texts = [r["text"] for r in all_rows]
    if len(set(texts)) != len(texts):
        raise SystemExit("duplicate review text")
    sim, a, b = max_word_set_jaccard(texts)
    if sim >= NEAR_DUPLICATE_THRESHOLD:
        raise SystemExit(f"near-duplicate reviews (word-set Jaccard {sim:.3f}):\n  {a}\n  {b}")

    splits = make_splits()
    stale = []
    for name, rows in splits.items():
        path = OUT_DIR / f"{name}.jsonl"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != render(rows):
                stale.append(str(path))
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(render(rows), encoding="utf-8")
        pos = sum(r["label"] == "Positive" for r in rows)
        print(f"{name:<11} {len(rows):>4} rows  Positive {pos:>3}  Negative {len(rows) - pos:>3}")
    print(f"{len(all_rows)} reviews, {len(DOMAINS)} domains, max word-set Jaccard {sim:.3f}")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
